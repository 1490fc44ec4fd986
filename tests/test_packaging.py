"""The Debian package: built, installed, started as its unit starts it, upgraded, removed, purged.

The installs go into a throwaway root (tests/deb_root.py: the host's /usr under an overlay,
`dpkg --root`, maintainer scripts chrooted into it); the unit is started inside it as systemd
would, in a network namespace of its own. This needs root, dpkg-deb and chroot, and the right
to mount; elsewhere these tests are skipped with the reason. Every command runs without
`PYTHONDONTWRITEBYTECODE`, as on a fresh machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from deb_root import UnitRun, deb_root, dpkg, fresh_env, installed_version, run, tree

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parent.parent
PACKAGING = REPO / "packaging"
CONFIG = "/etc/lineside/lineside.toml"
ADMIN_PW = "etc/lineside/admin.pw"

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("dpkg-deb") is None or shutil.which("chroot") is None,
    reason="building and installing the package needs root, dpkg-deb and chroot",
)


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Version N and N+1 of the package (N+1 reuses N's virtualenv: only the project changes)."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("building the package needs dpkg-deb")
    build = tmp_path_factory.mktemp("deb-build")
    out = tmp_path_factory.mktemp("deb-out")
    env = {"BUILD_DIR": str(build)}
    first = Path(run(PACKAGING / "build-deb.sh", "-v", "0.1.0", "-o", out, env=env).strip())
    second = Path(
        run(
            PACKAGING / "build-deb.sh",
            "-v",
            "0.1.1",
            "-o",
            out,
            env={**env, "REUSE_VENV": "1"},
        ).strip()
    )
    return first, second


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """A throwaway root for `dpkg --root` (skipped where it cannot be mounted)."""
    with deb_root(tmp_path) as base:
        yield base


def _as_root_in(root: Path, *command: str) -> str:
    """A command run by root inside the installed root, as an operator would."""
    return run("chroot", root, *command)


@needs_root
def test_install_upgrade_remove_purge(packages: tuple[Path, Path], root: Path) -> None:
    first, second = packages
    contents = run("dpkg-deb", "--contents", first)
    assert "./opt/lineside/bin/lineside" in contents
    assert "./lib/systemd/system/lineside.service" in contents
    assert "./usr/share/doc/lineside/examples/70-lineside-scanner.rules" in contents
    assert "__pycache__" not in contents  # compiled by postinst, removed by prerm
    assert run("dpkg-deb", "--field", first, "Version").strip() == "0.1.0"
    assert CONFIG in run("dpkg-deb", "--info", first, "conffiles")
    before = tree(root)

    # install: user in dialout, data dir owned by it, config and password readable by it
    out = dpkg(root, "--install", first)
    assert installed_version(root) == "0.1.0"
    assert f"admin password is in /{ADMIN_PW}" in out
    passwd = (root / "etc/passwd").read_text()
    assert re.search(
        r"^lineside:x:\d+:\d+:.*:/var/lib/lineside:/usr/sbin/nologin$", passwd, re.MULTILINE
    )
    dialout = next(
        line
        for line in (root / "etc/group").read_text().splitlines()
        if line.startswith("dialout:")
    )
    assert "lineside" in dialout.split(":")[3].split(",")
    data = root / "var/lib/lineside"
    assert data.is_dir()
    assert (data.stat().st_mode & 0o777) == 0o750
    config = root / CONFIG.lstrip("/")
    assert (config.stat().st_mode & 0o777) == 0o640
    password = root / ADMIN_PW
    assert (password.stat().st_mode & 0o777) == 0o640
    assert len(password.read_text().strip()) >= 20
    assert (root / "usr/bin/lineside").is_symlink()
    assert list((root / "opt/lineside/lib").glob("python3*/site-packages/agent/__pycache__/*.pyc"))

    # the CLI run by root, as the README's install steps do: no bytecode may appear that
    # removal would leave behind (PYTHONDONTWRITEBYTECODE is unset here, as on a fresh machine)
    assert "ok" in _as_root_in(root, "/usr/bin/lineside", "check-config", "-c", CONFIG)
    _as_root_in(root, "/usr/bin/lineside", "--version")
    _as_root_in(
        root, "/opt/lineside/bin/python", "-c", "import aiomqtt, pydantic, agent.runtime.agent"
    )

    # the site edits its config and the agent has data
    edited = config.read_text().replace('site = "plant-a"', 'site = "plant-b"')
    config.write_text(edited)
    with sqlite3.connect(data / "outbox.db") as db:
        db.execute("CREATE TABLE kept (x)")

    # upgrade to N+1: config (a conffile), password and data kept
    secret = password.read_text()
    dpkg(root, "--install", second)
    assert installed_version(root) == "0.1.1"
    assert config.read_text() == edited
    assert password.read_text() == secret
    assert (data / "outbox.db").exists()
    _as_root_in(root, "/usr/bin/lineside", "check-config", "-c", CONFIG)

    # remove: code gone (bytecode too), config, password and data kept
    dpkg(root, "--remove", "lineside")
    assert not (root / "opt").exists(), sorted(p.name for p in (root / "opt").rglob("*"))[:20]
    assert not (root / "usr/bin/lineside").exists()
    assert config.read_text() == edited
    assert password.read_text() == secret
    assert (data / "outbox.db").exists()

    # purge: nothing left but the user (Debian keeps it)
    dpkg(root, "--purge", "lineside")
    assert installed_version(root) is None
    assert tree(root) == before, sorted(tree(root) ^ before)


@needs_root
def test_installed_unit_starts_and_stays_up(
    packages: tuple[Path, Path], root: Path, tmp_path: Path
) -> None:
    dpkg(root, "--install", packages[0])
    with UnitRun(root, tmp_path / "unit.log") as unit:
        unit.up()  # READY=1, then watchdog pings: the loop keeps turning
        unit.wait_for("WATCHDOG=1", count=sum("WATCHDOG=1" in m for m in unit.messages) + 2)
        status, body = unit.http("GET", "/api/status")
        assert status == 200, body
        assert body["agent"]["node"] == "line-3"
        status, session = unit.http("GET", "/api/session")
        assert session["actions_enabled"] is True
        secret = (root / ADMIN_PW).read_text().strip()
        status, login = unit.http("POST", "/api/login", {"password": secret})
        assert status == 200, login
        assert unit.process is not None
        assert unit.process.poll() is None
        assert unit.stop() == 0, unit.log()[-4000:]
    log = unit.log()
    assert f"{CONFIG}: ok" in log  # ExecStartPre ran and passed
    assert "lineside stopped" in log
    identity = json.loads((root / "var/lib/lineside/outbox.identity.json").read_text())
    assert identity["node"] == "line-3"


@needs_root
def test_remove_and_reinstall_keeps_what_the_site_has(
    packages: tuple[Path, Path], root: Path, tmp_path: Path
) -> None:
    before = tree(root)
    dpkg(root, "--install", packages[0])
    with UnitRun(root, tmp_path / "first.log") as unit:
        unit.up()
        assert unit.stop() == 0
    data = root / "var/lib/lineside"
    identity = (data / "outbox.identity.json").read_text()
    secret = (root / ADMIN_PW).read_text()

    dpkg(root, "--remove", "lineside")
    assert not (root / "opt").exists()
    assert (data / "outbox.db").stat().st_size > 0

    out = dpkg(root, "--install", packages[0])
    assert "admin password" not in out  # the site's password is kept, not replaced
    assert (root / ADMIN_PW).read_text() == secret
    with UnitRun(root, tmp_path / "second.log") as unit:
        unit.up()
        assert unit.stop() == 0
    assert (data / "outbox.identity.json").read_text() == identity  # the same outbox, reopened
    assert "started anew" not in unit.log()

    dpkg(root, "--purge", "lineside")
    assert tree(root) == before, sorted(tree(root) ^ before)


@needs_root
def test_a_unit_that_cannot_start_says_why(
    packages: tuple[Path, Path], root: Path, tmp_path: Path
) -> None:
    dpkg(root, "--install", packages[0])
    (root / ADMIN_PW).write_text("   \n")
    with UnitRun(root, tmp_path / "unit.log") as unit:
        assert unit.process is not None
        assert unit.process.wait(60) == 2
    assert "status.admin_password_file:" in unit.log()
    assert "READY=1" not in "".join(unit.messages)


def test_unit_is_notify_hardened_and_limited() -> None:
    unit = (PACKAGING / "lineside.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=always",
        "User=lineside",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/lineside",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "DeviceAllow=char-ttyUSB rw",
        "DeviceAllow=char-input r\n",  # HID scanners: read and grab, never write
        "LimitNOFILE=4096",
        "MemoryMax=512M",
    ):
        assert line in unit, line
    # not the input group (every keyboard on the PC): the udev rule gives it one scanner
    groups = re.findall(r"^SupplementaryGroups=(.*)$", unit, re.MULTILINE)
    assert groups == ["dialout"]
    unit_section = unit.split("[Service]")[0]
    interval = re.search(r"^StartLimitIntervalSec=(\d+)$", unit_section, re.MULTILINE)
    burst = re.search(r"^StartLimitBurst=(\d+)$", unit_section, re.MULTILINE)
    assert interval is not None
    assert burst is not None
    # a start that fails every time (RestartSec=2 s apart) gives up within the interval
    assert int(burst.group(1)) * 2 < int(interval.group(1))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_security_exposure_is_ok() -> None:
    out = run("systemd-analyze", "security", "--offline=true", PACKAGING / "lineside.service")
    found = re.search(r"Overall exposure level for lineside.service: ([\d.]+) (\w+)", out)
    assert found is not None, out
    assert float(found.group(1)) < 3.0
    assert found.group(2) == "OK"


def test_containerfile_names_what_sites_need() -> None:
    text = (PACKAGING / "Containerfile").read_text()
    assert "--device" in text
    assert "/var/lib/lineside" in text
    assert "lineside" in text.split("ENTRYPOINT", 1)[1]


def test_maintainer_scripts_are_posix_sh() -> None:
    for script in ("postinst", "prerm", "postrm"):
        done = subprocess.run(
            ["sh", "-n", str(PACKAGING / "debian" / script)], capture_output=True, check=False
        )
        assert done.returncode == 0, (script, done.stderr)


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="no setpriv(1)")
def test_without_the_right_to_mount_the_install_tests_skip_with_the_reason(
    tmp_path: Path,
) -> None:
    # root in a default container: no CAP_SYS_ADMIN, so no mount
    done = subprocess.run(
        [
            "setpriv",
            "--bounding-set=-sys_admin",
            "--inh-caps=-sys_admin",
            "--",
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path / 'inner'}",
            "-rs",
            f"{__file__}::test_a_unit_that_cannot_start_says_why",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        cwd=REPO,
        env=fresh_env(),
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "1 skipped" in done.stdout
    assert "cannot mount the throwaway root's usr" in done.stdout
