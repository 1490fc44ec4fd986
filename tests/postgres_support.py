"""A PostgreSQL cluster of the test's own: initdb'd once per session, copied and started per test.

`PostgresTemplate.make` runs `initdb` once (superuser `lineside_admin`, trust on the unix
socket in the cluster's own directory, SCRAM passwords over TCP); `template.cluster()` copies
that data directory into a new temporary directory and `PostgresCluster.start` runs it on a
free loopback port, its socket in that directory. Tests stop it, kill it (SIGKILL of the
postmaster and every backend, as a power cut of the database server would) and start it again.
The machine's own PostgreSQL (:5432) is never used.

PostgreSQL refuses to run as root: as root the clusters run as the `postgres` user (through
`runuser`), in directories it owns under the system's temporary directory (pytest's `tmp_path`
is private to root). The binaries come from `pg_config --bindir`, else the newest
/usr/lib/postgresql/*/bin; tests skip with the reason when there are none (`make test`
installs them: packaging/system-deps.sh).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from support import free_port

if TYPE_CHECKING:
    from collections.abc import Sequence

ADMIN = "lineside_admin"
ADMIN_PASSWORD = "admin-secret"  # the test cluster's own superuser
DATABASE = "lineside"
SERVER_USER = "postgres"  # who runs the server when the tests run as root
START_TIMEOUT_S = 30

# Settings of every test cluster: small, quick, and loopback only. fsync stays on unless a test
# says otherwise: a SIGKILL of the server loses nothing either way (the OS keeps the pages),
# but the figures of the benchmark helper must come from a durable server.
BASE_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "shared_buffers": "'32MB'",
    "max_connections": "40",
    "max_wal_size": "'256MB'",
    "log_min_messages": "'warning'",
    "log_connections": "off",
    "dynamic_shared_memory_type": "'posix'",
}
BASE_HBA = (
    "local all all trust\n"  # the socket lives in the cluster's private directory
    "host all all 127.0.0.1/32 scram-sha-256\n"
)


def postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl are: `pg_config --bindir`, else the newest Debian server."""
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(
                [pg_config, "--bindir"], check=True, capture_output=True, text=True
            ).stdout.strip()
            if out and (Path(out) / "initdb").exists() and (Path(out) / "pg_ctl").exists():
                return Path(out)
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    initdb = shutil.which("initdb")
    if initdb is not None and shutil.which("pg_ctl") is not None:
        return Path(initdb).resolve().parent
    return None


def _server_user() -> pwd.struct_passwd | None:
    """The account the server runs as: `postgres` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError as exc:
        msg = "running as root, PostgreSQL needs a 'postgres' user to run as (apt's creates one)"
        raise RuntimeError(msg) from exc


def _private_dir(prefix: str) -> Path:
    """A new temporary directory the server's account owns (mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    account = _server_user()
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)
    return path


def _as_server(argv: Sequence[str]) -> list[str]:
    """`argv` run as the server's account (through runuser when we are root)."""
    account = _server_user()
    if account is None:
        return list(argv)
    return ["runuser", "-u", account.pw_name, "--", *argv]


def _exec_as_server(argv: Sequence[str]) -> list[str]:
    """`argv` exec'd as the server's account (setpriv: no process in between)."""
    account = _server_user()
    if account is None:
        return list(argv)
    ids = [f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups"]
    return ["setpriv", *ids, "--", *argv]


def _run(argv: Sequence[str], cwd: Path) -> None:
    done = subprocess.run(
        _as_server(argv), cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr or done.stdout}")


def give_to_server(path: Path, mode: int = 0o600) -> None:
    """Hand a file (a TLS key) to the server's account with `mode`, as PostgreSQL demands."""
    account = _server_user()
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)
    path.chmod(mode)


@dataclass
class PostgresTemplate:
    """A data directory initdb'd once; every test cluster starts as a copy of it."""

    root: Path
    bindir: Path

    @classmethod
    def make(cls) -> PostgresTemplate:
        """Run initdb into a new directory (skips the calling test where PostgreSQL is missing)."""
        import pytest  # noqa: PLC0415  # only this path needs it

        bindir = postgres_bindir()
        if bindir is None:
            pytest.skip(
                "PostgreSQL server binaries (initdb, pg_ctl) are not installed "
                "(make test installs them: apt-get install postgresql)"
            )
        root = _private_dir("lineside-pgtemplate-")
        pwfile = root / "pw"
        pwfile.write_text(ADMIN_PASSWORD + "\n")
        give_to_server(pwfile)
        initdb = [str(bindir / "initdb"), "-D", str(root / "data"), "-U", ADMIN]
        initdb += ["--pwfile", str(pwfile), "-E", "UTF8", "--locale", "C", "--no-sync"]
        initdb += ["--auth-local", "trust", "--auth-host", "scram-sha-256", "--no-instructions"]
        _run(initdb, root)
        pwfile.unlink()
        return cls(root, bindir)

    def cluster(self) -> PostgresCluster:
        """A new cluster: a copy of the template's data directory (not started)."""
        root = _private_dir("lineside-pg-")
        # cp -a keeps the owner (the server's account) and modes, which PostgreSQL checks
        subprocess.run(["cp", "-a", str(self.root / "data"), str(root / "data")], check=True)
        cluster = PostgresCluster(root=root, bindir=self.bindir)
        cluster.write_hba(BASE_HBA)
        return cluster

    def remove(self) -> None:
        """Delete the template directory."""
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class PostgresCluster:
    """One test's PostgreSQL: started, stopped, killed and restarted by the test."""

    root: Path
    bindir: Path
    port: int = field(default_factory=free_port)
    settings: dict[str, str] = field(default_factory=dict)
    created_db: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        """The data directory."""
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        """Where the server's unix socket lives (the cluster's own directory)."""
        return self.root

    @property
    def log(self) -> Path:
        """The server's log file."""
        return self.root / "server.log"

    def dsn(self, user: str = ADMIN, database: str = DATABASE, host: str = "127.0.0.1") -> str:
        """A `postgresql://` URL for `user` over TCP (no password: that comes from a file)."""
        return f"postgresql://{user}@{host}:{self.port}/{database}"

    def admin_conninfo(self, database: str = DATABASE) -> str:
        """The superuser's connection over the unix socket (trust)."""
        return f"host={self.socket_dir} port={self.port} user={ADMIN} dbname={database}"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until it accepts connections; make the test database."""
        if self.process is not None:
            return
        options = {**BASE_SETTINGS, **self.settings}
        options["port"] = str(self.port)
        options["unix_socket_directories"] = f"'{self.socket_dir}'"
        conf = "".join(f"{k} = {v}\n" for k, v in options.items())
        (self.data / "postgresql.auto.conf").write_text(conf)
        give_to_server(self.data / "postgresql.auto.conf")
        # The test is the server's parent (not pg_ctl's daemon), so it reaps the postmaster
        # itself after a SIGKILL: a zombie's pid would keep the next start from taking the lock.
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                _exec_as_server([str(self.bindir / "postgres"), "-D", str(self.data)]),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of pytest is not a shutdown request to it
            )
        self._wait_ready()
        if not self.created_db:
            with self.admin(database="postgres") as conn:
                conn.execute(f"CREATE DATABASE {DATABASE}")
            self.created_db = True

    def _wait_ready(self) -> None:
        """Wait until the postmaster says "ready" in its lock file; fail if it exits first."""
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                self.process = None
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"PostgreSQL exited at start:\n{tail}")
            with contextlib.suppress(FileNotFoundError):
                lines = (self.data / "postmaster.pid").read_text().splitlines()
                if (
                    len(lines) >= 8
                    and lines[0] == str(self.process.pid)
                    and lines[7].strip() == "ready"
                ):  # the 8th line of postmaster.pid is the status
                    return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"PostgreSQL did not get ready within {START_TIMEOUT_S} s")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server cleanly (fast shutdown: sessions are ended, nothing is lost)."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend at once, as a power cut of the server would."""
        if self.process is None:
            return
        family = [self.process.pid, *_children(self.process.pid)]
        for member in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)
        self.process.wait(10)
        self.process = None
        deadline = time.monotonic() + 10
        while any(_alive(member) for member in family):
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL processes {family} survived SIGKILL")
            time.sleep(0.01)

    def remove(self) -> None:
        """Stop (or kill) the server and delete its directory."""
        try:
            self.stop()
        finally:
            self.kill()
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def running(self) -> bool:
        """Whether the server runs."""
        return self.process is not None and self.process.poll() is None

    # -- administration -------------------------------------------------------------------

    def admin(self, database: str = DATABASE) -> psycopg.Connection[Any]:
        """A superuser connection (autocommit) over the unix socket; use it with `with`."""
        return psycopg.connect(self.admin_conninfo(database), autocommit=True)

    def sql(self, statement: str, *params: object) -> list[tuple[Any, ...]]:
        """Run one statement as the superuser in the test database; its rows, if any."""
        with self.admin() as conn:
            cur = conn.execute(statement.encode(), params or None)
            return cur.fetchall() if cur.description is not None else []

    def create_role(self, name: str, password: str) -> None:
        """A login role with a password (no rights of its own)."""
        with self.admin() as conn:
            conn.execute(
                psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    psycopg.sql.Identifier(name), psycopg.sql.Literal(password)
                )
            )

    def write_hba(self, text: str) -> None:
        """Replace pg_hba.conf (reload a running server to apply it)."""
        path = self.data / "pg_hba.conf"
        path.write_text(text)
        give_to_server(path)

    def reload(self) -> None:
        """Make the running server re-read its configuration files."""
        self.sql("SELECT pg_reload_conf()")

    def enable_tls(self, cert: Path, key: Path, ca: Path) -> None:
        """Serve TLS with `cert`/`key`, trusting client certificates signed by `ca`."""
        for name, source in (("server.crt", cert), ("server.key", key), ("ca.crt", ca)):
            target = self.data / name
            shutil.copyfile(source, target)
            give_to_server(target)
        self.settings |= {
            "ssl": "on",
            "ssl_cert_file": "'server.crt'",
            "ssl_key_file": "'server.key'",
            "ssl_ca_file": "'ca.crt'",
        }


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (the postmaster's backends and helpers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            # the command name may hold spaces and parentheses: the ppid follows the last ')'
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone, just not reaped
