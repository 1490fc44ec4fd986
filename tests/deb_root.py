"""A throwaway root for installing the Debian package, and running its unit inside it.

The root is a directory with the host's /usr under an overlay (writes land in the test's upper
directory, never in the host's /usr), the host's /dev bound in, a copy of the host's user and
group files, and an empty dpkg database; `dpkg --root` runs the maintainer scripts chrooted
into it. Dependencies (python3, passwd) come from the host's /usr, so dpkg is told
`--force-depends`. This needs root with the right to mount; without it the tests are skipped
with the reason.

`UnitRun` starts the installed unit as systemd would, without systemd: its `ExecStartPre`
then `ExecStart` commands, chrooted into the root, as its `User=`/`Group=` with its
`SupplementaryGroups=`, `UMask=` and `Environment=`, a `NOTIFY_SOCKET` the test listens on
(`Type=notify`: READY=1, then WATCHDOG=1 pings) and a network namespace of its own (the
shipped config listens on :8080 and names a broker on 127.0.0.1:1883: neither may meet this
machine's services). Not reproduced: the sandbox settings (ProtectSystem= and the rest).

Every command runs with `PYTHONDONTWRITEBYTECODE` removed from its environment: a fresh
machine does not set it, and a developer's setting once hid bytecode left behind by removal.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

HOST_ETC = ("passwd", "group", "shadow", "gshadow", "login.defs", "nsswitch.conf")
UNIT = "lib/systemd/system/lineside.service"
NOTIFY = "run/lineside-notify.sock"  # inside the root
# What the test does not compare between "before install" and "after purge": the dpkg
# database, the overlay and bind mounts, and the backups and lock file useradd leaves beside
# the files it edits (the `lineside` user is kept on purge, as Debian does).
NOT_COMPARED = re.compile(
    r"^(usr|dev|proc|var/lib/dpkg)(/|$)|^etc/((passwd|group|shadow|gshadow)-|\.pwd\.lock)$"
)


def fresh_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without `PYTHONDONTWRITEBYTECODE`, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **(extra or {})}


def run(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run a command (fresh environment); its stdout, or a failed assertion with its output."""
    done = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        check=False,
        env=fresh_env(env),
        timeout=timeout,
    )
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _mount(*args: str | Path) -> None:
    """mount(8), or skip the test with why it cannot (root without the right to mount)."""
    done = subprocess.run(["mount", *map(str, args)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[0]
        pytest.skip(f"cannot mount the throwaway root's {Path(args[-1]).name}: {reason}")


@contextlib.contextmanager
def deb_root(tmp_path: Path) -> Iterator[Path]:
    """A throwaway root for `dpkg --root` (its path short enough for a unix socket inside)."""
    base = Path(tempfile.mkdtemp(prefix="lineside-root-", dir="/tmp"))
    base.chmod(0o755)  # a root directory: the service's user must get through it
    upper, work = tmp_path / "usr-upper", tmp_path / "usr-work"
    for d in (base / "usr", base / "dev", base / "proc", base / "run", base / "tmp"):
        d.mkdir(parents=True)
    for d in (upper, work, base / "etc", base / "var/lib/dpkg/info", base / "var/lib/dpkg/updates"):
        d.mkdir(parents=True)
    (base / "run").chmod(0o755)
    (base / "tmp").chmod(0o1777)
    (base / "var/lib/dpkg/status").write_text("")
    (base / "var/lib/dpkg/available").write_text("")
    for name in ("bin", "sbin", "lib", "lib64"):
        if Path("/", name).is_symlink():  # merged /usr
            (base / name).symlink_to(f"usr/{name}")
    for name in HOST_ETC:
        if Path("/etc", name).exists():
            shutil.copy2(Path("/etc", name), base / "etc" / name)
    mounted: list[Path] = []
    try:
        _mount(
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir=/usr,upperdir={upper},workdir={work}",
            base / "usr",
        )
        mounted.append(base / "usr")
        _mount("--bind", "/dev", base / "dev")
        mounted.append(base / "dev")
        probe = subprocess.run(
            ["chroot", base, "/bin/true"], capture_output=True, text=True, check=False
        )
        if probe.returncode != 0:
            pytest.skip(f"cannot chroot: {probe.stderr.strip()}")
        yield base
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", str(target)], check=True)
        shutil.rmtree(base)


def dpkg(root: Path, *args: str | Path) -> str:
    """dpkg on the throwaway root."""
    return run("dpkg", f"--root={root}", "--force-depends", "--force-confold", *args)


def installed_version(root: Path) -> str | None:
    """The installed version of lineside in the root's dpkg database, or None."""
    status = (root / "var/lib/dpkg/status").read_text()
    block = re.search(r"Package: lineside\n(?:.+\n)*?Status: (.+)\n(?:.+\n)*?Version: (.+)", status)
    if block is None or "not-installed" in block.group(1):
        return None
    return block.group(2)


def tree(root: Path) -> set[str]:
    """Every path under the root, relative, except what `NOT_COMPARED` leaves out."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath).relative_to(root)
        found.update(
            rel
            for rel in ((here / name).as_posix() for name in dirnames + filenames)
            if not NOT_COMPARED.search(rel)
        )
        dirnames[:] = [d for d in dirnames if not NOT_COMPARED.search((here / d).as_posix())]
    return found


@dataclass
class Unit:
    """What of a systemd unit file says how its service is started."""

    user: str
    group: str
    supplementary: list[str]
    environment: dict[str, str]
    exec_start_pre: list[list[str]]
    exec_start: list[str]
    umask: int
    service_type: str

    @classmethod
    def parse(cls, text: str) -> Unit:
        """Parse the [Service] section's start settings (one ExecStart=, as ours has)."""
        values: dict[str, list[str]] = {}
        section = ""
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]":
                key, _, value = line.partition("=")
                values.setdefault(key, []).append(value)
        env = dict(
            item.split("=", 1)
            for entry in values.get("Environment", [])
            for item in shlex.split(entry)
        )
        (start,) = values["ExecStart"]
        return cls(
            user=values["User"][-1],
            group=values["Group"][-1],
            supplementary=[
                g for entry in values.get("SupplementaryGroups", []) for g in entry.split()
            ],
            environment=env,
            exec_start_pre=[shlex.split(v) for v in values.get("ExecStartPre", [])],
            exec_start=shlex.split(start),
            umask=int(values.get("UMask", ["0022"])[-1], 8),
            service_type=values.get("Type", ["simple"])[-1],
        )


def _ids(root: Path, database: str, names: list[str]) -> list[str]:
    """Numeric ids of users (passwd) or groups (group) as the root's files define them."""
    table = {
        line.split(":")[0]: line.split(":")[2]
        for line in (root / "etc" / database).read_text().splitlines()
        if line.count(":") >= 3
    }
    return [table[name] for name in names]


@dataclass
class UnitRun:
    """The installed unit started as systemd would start it (see the module docstring)."""

    root: Path
    log_file: Path
    watchdog_s: float = 2.0  # shortened from WatchdogSec= so that pings come within seconds
    process: subprocess.Popen[bytes] | None = None
    netns: str = field(default_factory=lambda: f"lineside-test-{os.getpid()}-{time.monotonic_ns()}")
    notify: socket.socket | None = None
    messages: list[str] = field(default_factory=list)

    def __enter__(self) -> Self:
        if shutil.which("ip") is None:
            pytest.skip("running the unit needs ip(8) for a network namespace")
        made = subprocess.run(
            ["ip", "netns", "add", self.netns], capture_output=True, text=True, check=False
        )
        if made.returncode != 0:
            pytest.skip(f"cannot make a network namespace: {made.stderr.strip()}")
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if self.notify is not None:
            self.notify.close()
            (self.root / NOTIFY).unlink(missing_ok=True)
        subprocess.run(["ip", "netns", "del", self.netns], check=False)

    def _start(self) -> None:
        unit = Unit.parse((self.root / UNIT).read_text())
        assert unit.service_type == "notify"
        (uid,) = _ids(self.root, "passwd", [unit.user])
        gids = _ids(self.root, "group", [unit.group, *unit.supplementary])
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.root / NOTIFY))
        (self.root / NOTIFY).chmod(0o777)  # systemd's socket takes any sender
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
            "HOME": f"/var/lib/{unit.user}",
            "USER": unit.user,
            "LOGNAME": unit.user,
            "LANG": "C.UTF-8",
            **unit.environment,
        }
        service_env = {
            **env,
            "NOTIFY_SOCKET": f"/{NOTIFY}",
            "WATCHDOG_USEC": str(int(self.watchdog_s * 1_000_000)),
        }
        chroot = [
            "chroot",
            f"--userspec={uid}:{gids[0]}",
            f"--groups={','.join(gids)}",
            str(self.root),
        ]

        def as_service(command: list[str], variables: dict[str, str]) -> str:
            pairs = [f"{k}={v}" for k, v in variables.items()]
            return shlex.join([*chroot, "/usr/bin/env", "-i", *pairs, *command])

        script = "\n".join(
            [
                "set -e",
                f"mount -t proc proc {shlex.quote(str(self.root / 'proc'))}",
                "ip link set lo up",
                f"umask {unit.umask:04o}",
                *(as_service(pre, env) for pre in unit.exec_start_pre),
                "exec " + as_service(unit.exec_start, service_env),
            ]
        )
        with self.log_file.open("ab") as log:
            # `ip netns exec` execs (no fork), and so do sh's `exec`, chroot and env: this
            # process IS the agent once the pre-start commands have passed.
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, "sh", "-c", script],
                stdout=log,
                stderr=log,
                env=fresh_env(),
            )

    def log(self) -> str:
        """What the unit's commands printed so far."""
        return self.log_file.read_text(errors="replace")

    def wait_for(self, message: str, count: int = 1, timeout: float = 90) -> None:
        """Wait until `count` notify datagrams containing `message` arrived (since the start)."""
        assert self.notify is not None
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while sum(message in m for m in self.messages) < count:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the service exited ({self.process.returncode}) before {message!r}:\n"
                    + self.log()[-4000:]
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {message!r} x{count} within {timeout} s:\n{self.log()[-4000:]}"
                )
            self.notify.settimeout(0.2)
            with contextlib.suppress(TimeoutError):
                self.messages.append(self.notify.recv(4096).decode(errors="replace"))

    def http(
        self, method: str, path: str, body: dict[str, Any] | None = None, port: int = 8080
    ) -> tuple[int, dict[str, Any]]:
        """One request to the status page inside the unit's network namespace."""
        code = (
            "import json, sys, urllib.request, urllib.error\n"
            "m, url, body = sys.argv[1], sys.argv[2], sys.argv[3]\n"
            "origin = url.split('/api')[0]\n"
            "req = urllib.request.Request(url, method=m, data=body.encode() or None,\n"
            "    headers={'Content-Type': 'application/json', 'Origin': origin})\n"
            "try:\n"
            "    r = urllib.request.urlopen(req, timeout=10); s, t = r.status, r.read()\n"
            "except urllib.error.HTTPError as e:\n"
            "    s, t = e.code, e.read()\n"
            "print(json.dumps({'status': s, 'body': t.decode()}))\n"
        )
        out = run(
            "ip",
            "netns",
            "exec",
            self.netns,
            sys.executable,
            "-c",
            code,
            method,
            f"http://127.0.0.1:{port}{path}",
            json.dumps(body) if body is not None else "",
            timeout=60,
        )
        answer = json.loads(out)
        try:
            parsed = json.loads(answer["body"])
        except ValueError:
            parsed = {"text": answer["body"]}
        return int(answer["status"]), parsed if isinstance(parsed, dict) else {"value": parsed}

    def up(self) -> None:
        """Wait for READY=1 and then two watchdog pings: started, and its loop turning."""
        self.wait_for("READY=1")
        self.wait_for("WATCHDOG=1", count=sum("WATCHDOG=1" in m for m in self.messages) + 2)

    def stop(self, timeout: float = 45) -> int:
        """SIGTERM, as `systemctl stop` sends; the exit code.

        The timeout covers the agent's re-cancel of a task that lost its cancellation (15 s),
        within the unit's TimeoutStopSec.
        """
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self.process = None
        return code
