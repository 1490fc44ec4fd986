"""The Debian package: built from a virtualenv, installed, upgraded, removed and purged.

The throwaway root is a directory with the host's /usr under an overlay (writes land in the
test's upper directory, never in the host's /usr), a copy of the host's user and group files,
and an empty dpkg database; `dpkg --root` runs the maintainer scripts chrooted into it. This
needs root (chroot, mount) and dpkg-deb; elsewhere the install tests are skipped. Dependencies
(python3, passwd) come from the host's /usr, so dpkg is told `--force-depends`.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parent.parent
PACKAGING = REPO / "packaging"
HOST_ETC = ("passwd", "group", "shadow", "gshadow", "login.defs", "nsswitch.conf")

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("dpkg-deb") is None or shutil.which("chroot") is None,
    reason="building and installing the package needs root, dpkg-deb and chroot",
)


def _run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Version N and N+1 of the package (N+1 reuses N's virtualenv: only the project changes)."""
    build = tmp_path_factory.mktemp("deb-build")
    out = tmp_path_factory.mktemp("deb-out")
    env = {"BUILD_DIR": str(build)}
    first = Path(_run(PACKAGING / "build-deb.sh", "-v", "0.1.0", "-o", out, env=env).strip())
    second = Path(
        _run(
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
    """A throwaway root for `dpkg --root`."""
    base = tmp_path / "root"
    upper, work = tmp_path / "usr-upper", tmp_path / "usr-work"
    for d in (base / "usr", upper, work, base / "etc", base / "tmp", base / "var/lib/dpkg/info"):
        d.mkdir(parents=True)
    (base / "var/lib/dpkg/updates").mkdir()
    (base / "var/lib/dpkg/status").write_text("")
    (base / "var/lib/dpkg/available").write_text("")
    for name in ("bin", "sbin", "lib", "lib64"):
        if Path("/", name).is_symlink():  # merged /usr
            (base / name).symlink_to(f"usr/{name}")
    for name in HOST_ETC:
        if Path("/etc", name).exists():
            shutil.copy2(Path("/etc", name), base / "etc" / name)
    _run(
        "mount",
        "-t",
        "overlay",
        "overlay",
        "-o",
        f"lowerdir=/usr,upperdir={upper},workdir={work}",
        base / "usr",
    )
    try:
        yield base
    finally:
        subprocess.run(["umount", str(base / "usr")], check=True)


def _dpkg(root: Path, *args: str | Path) -> str:
    return _run("dpkg", f"--root={root}", "--force-depends", "--force-confold", *args)


def _installed_version(root: Path) -> str | None:
    status = (root / "var/lib/dpkg/status").read_text()
    block = re.search(r"Package: lineside\n(?:.+\n)*?Status: (.+)\n(?:.+\n)*?Version: (.+)", status)
    if block is None or "not-installed" in block.group(1):
        return None
    return block.group(2)


@needs_root
def test_install_upgrade_remove_purge(packages: tuple[Path, Path], root: Path) -> None:
    first, second = packages
    contents = _run("dpkg-deb", "--contents", first)
    assert "./opt/lineside/bin/lineside" in contents
    assert "./lib/systemd/system/lineside.service" in contents
    assert _run("dpkg-deb", "--field", first, "Version").strip() == "0.1.0"
    assert "/etc/lineside/lineside.toml" in _run("dpkg-deb", "--info", first, "conffiles")

    # install: user in dialout, data dir owned by it, config readable by it, CLI on PATH
    _dpkg(root, "--install", first)
    assert _installed_version(root) == "0.1.0"
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
    config = root / "etc/lineside/lineside.toml"
    assert (config.stat().st_mode & 0o777) == 0o640
    assert (root / "usr/bin/lineside").is_symlink()
    # the relocated virtualenv runs, with no network and nothing but the package
    out = _run(
        "chroot", root, "/usr/bin/lineside", "check-config", "-c", "/etc/lineside/lineside.toml"
    )
    assert "ok" in out
    _run("chroot", root, "/opt/lineside/bin/python", "-c", "import aiomqtt, pydantic, agent.cli")
    assert not Path("/opt/lineside").exists() or Path("/opt/lineside") != root / "opt/lineside"

    # the site edits its config and the agent has data
    edited = config.read_text().replace('site = "plant-a"', 'site = "plant-b"')
    config.write_text(edited)
    with sqlite3.connect(data / "outbox.db") as db:
        db.execute("CREATE TABLE kept (x)")

    # upgrade to N+1: config (a conffile) and data kept
    _dpkg(root, "--install", second)
    assert _installed_version(root) == "0.1.1"
    assert config.read_text() == edited
    assert (data / "outbox.db").exists()
    _run("chroot", root, "/usr/bin/lineside", "check-config", "-c", "/etc/lineside/lineside.toml")

    # remove: code gone, config and data kept
    _dpkg(root, "--remove", "lineside")
    assert not (root / "opt/lineside").exists()
    assert not (root / "usr/bin/lineside").exists()
    assert config.read_text() == edited
    assert (data / "outbox.db").exists()

    # purge: config and data gone
    _dpkg(root, "--purge", "lineside")
    assert not config.exists()
    assert not data.exists()
    assert _installed_version(root) is None


def test_unit_is_notify_and_hardened() -> None:
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
    ):
        assert line in unit, line


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_security_exposure_is_ok() -> None:
    out = _run("systemd-analyze", "security", "--offline=true", PACKAGING / "lineside.service")
    found = re.search(r"Overall exposure level for lineside.service: ([\d.]+) (\w+)", out)
    assert found is not None, out
    assert float(found.group(1)) < 3.0
    assert found.group(2) == "OK"


def test_containerfile_names_what_sites_need() -> None:
    text = (PACKAGING / "Containerfile").read_text()
    assert "--device" in text
    assert "/var/lib/lineside" in text
    assert "lineside" in text.split("ENTRYPOINT", 1)[1]
