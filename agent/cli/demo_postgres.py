"""The demo's plant database: a private PostgreSQL cluster under the demo folder.

`initdb` once into `DIR/postgres/data` (superuser `lineside_admin`, trust on the unix socket in
`DIR/postgres`, SCRAM passwords over TCP; a folder under the system's temporary directory
when the server's account cannot reach into DIR), then `postgres` on a free loopback port for
as long as the demo runs; the database `lineside` migrated, an agent role `lineside_agent`
with exactly the GRANTs `lineside plant migrate` prints. PostgreSQL refuses to run as root: as
root the cluster runs as the `postgres` account, in a folder it owns. The binaries are the newest
`/usr/lib/postgresql/*/bin` (`make demo` installs them: packaging/system-deps.sh), else
`pg_config --bindir`. The machine's own PostgreSQL is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from agent.cli.demo_broker import free_port
from agent.plant.schema import agent_grants, migrate

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

ADMIN = "lineside_admin"
AGENT_ROLE = "lineside_agent"
DATABASE = "lineside"
START_S = 30


def postgres_bindir() -> Path | None:
    """Where initdb and postgres are, or None."""
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(  # noqa: S603 (pg_config found on PATH, no input of ours)
                [pg_config, "--bindir"], check=True, capture_output=True, text=True
            ).stdout.strip()
            if out and (Path(out) / "initdb").exists():
                return Path(out)
    return None


def _account() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError as exc:
        msg = "as root, PostgreSQL must run as a 'postgres' account (apt's package makes one)"
        raise RuntimeError(msg) from exc


def _as_server(argv: Sequence[str]) -> list[str]:
    account = _account()
    if account is None:
        return list(argv)
    ids = [f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups"]
    return ["setpriv", *ids, "--", *argv]


def _own(path: Path, mode: int) -> None:
    account = _account()
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)
    path.chmod(mode)


@dataclass
class DemoPostgres:
    """The running demo cluster: its port, and the passwords written for the demo."""

    root: Path
    port: int
    admin_password_file: Path
    agent_password_file: Path

    def dsn(self, user: str) -> str:
        """`postgresql://user@127.0.0.1:port/lineside` (the password comes from a file)."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{DATABASE}"

    def admin_conninfo(self, database: str = DATABASE) -> str:
        """The superuser over the cluster's own unix socket."""
        return f"host={self.root} port={self.port} user={ADMIN} dbname={database}"


def _initdb(bindir: Path, root: Path, admin_password: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    _own(root, 0o700)
    pwfile = root / "initdb.pw"
    pwfile.write_text(admin_password + "\n")
    _own(pwfile, 0o600)
    argv = [str(bindir / "initdb"), "-D", str(root / "data"), "-U", ADMIN, "--pwfile", str(pwfile)]
    argv += ["-E", "UTF8", "--locale", "C", "--auth-local", "trust", "--auth-host"]
    argv += ["scram-sha-256", "--no-instructions"]
    try:
        done = subprocess.run(  # noqa: S603 (initdb with our own arguments)
            _as_server(argv), capture_output=True, text=True, check=False, timeout=120
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed: {done.stderr or done.stdout}")
    hba = root / "data" / "pg_hba.conf"
    hba.write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
    _own(hba, 0o600)


def cluster_root(workdir: Path) -> Path:
    """`workdir/postgres`, or a folder of its own under the system's temporary directory.

    The latter when the server's account cannot reach into `workdir` (a folder private to root).
    """
    root = workdir / "postgres"
    if _account() is None:
        return root
    for folder in [workdir, *workdir.parents]:
        if not folder.stat().st_mode & 0o001:  # others may not pass through it
            digest = hashlib.sha256(str(workdir).encode()).hexdigest()[:12]
            return Path(tempfile.gettempdir()) / f"lineside-demo-postgres-{digest}"
    return root


def _secret(path: Path, default: str) -> str:
    if not path.exists():
        path.write_text(default + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


async def _wait_ready(process: asyncio.subprocess.Process, data: Path) -> None:
    async with asyncio.timeout(START_S):
        while True:  # another process: no event to wait on, so read its status file
            if process.returncode is not None:
                raise RuntimeError(f"PostgreSQL exited at start (see {data.parent / 'server.log'})")
            with contextlib.suppress(FileNotFoundError):
                lines = (data / "postmaster.pid").read_text().splitlines()
                if len(lines) >= 8 and lines[7].strip() == "ready":  # noqa: PLR2004
                    return
            await asyncio.sleep(0.05)


async def _prepare(cluster: DemoPostgres, agent_password: str) -> None:
    async with await psycopg.AsyncConnection.connect(
        cluster.admin_conninfo("postgres"), autocommit=True
    ) as conn:
        cur = await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if await cur.fetchone() is None:
            await conn.execute(f"CREATE DATABASE {DATABASE}")
    async with await psycopg.AsyncConnection.connect(
        cluster.admin_conninfo(), autocommit=True
    ) as conn:
        await migrate(conn)
        cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (AGENT_ROLE,))
        verb = "ALTER" if await cur.fetchone() else "CREATE"
        await conn.execute(
            psycopg.sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(AGENT_ROLE), psycopg.sql.Literal(agent_password)
            )
        )
        for statement in agent_grants(AGENT_ROLE):
            await conn.execute(statement.encode())


@contextlib.asynccontextmanager
async def demo_postgres(workdir: Path, *, keep: bool = True) -> AsyncIterator[DemoPostgres]:
    """The demo's cluster under `workdir/postgres`, running while the block runs.

    `keep=False` deletes the cluster's folder afterwards (the bench's scratch database).
    """
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError(
            "PostgreSQL is not installed (make demo installs it: apt-get install postgresql), "
            "or run the one-agent demo: lineside demo --single"
        )
    root = cluster_root(workdir)
    admin_pw = _secret(workdir / "plantdb-admin.pw", "demo-admin")
    agent_pw = _secret(workdir / "plantdb-agent.pw", "demo-agent")
    if not (root / "data" / "PG_VERSION").exists():
        await asyncio.to_thread(_initdb, bindir, root, admin_pw)
    port = free_port()
    settings: dict[str, Any] = {
        "port": port,
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(root),
        "shared_buffers": "32MB",
        "max_connections": "40",
    }
    argv = [str(bindir / "postgres"), "-D", str(root / "data")]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]
    with (root / "server.log").open("ab") as log:
        # its own session: the terminal's Ctrl-C is the demo's to handle, not the database's
        process = await asyncio.create_subprocess_exec(
            *_as_server(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        await _wait_ready(process, root / "data")
        cluster = DemoPostgres(
            root, port, workdir / "plantdb-admin.pw", workdir / "plantdb-agent.pw"
        )
        await _prepare(cluster, agent_pw)
        yield cluster
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)  # fast shutdown: sessions ended, nothing lost
        async with asyncio.timeout(30):
            await process.wait()
        if not keep:
            await asyncio.to_thread(partial(shutil.rmtree, root, ignore_errors=True))
