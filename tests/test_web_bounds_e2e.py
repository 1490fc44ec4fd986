"""A real `lineside run` process under 1,500 half-sent requests, with a service's 1,024 files.

A request that never finishes must not hold a file descriptor for long, and many of them must
not take the descriptors the agent needs for its database, broker and scanners: the agent stays
up, scans are committed and delivered while the requests are held, and `/healthz` answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from agent_harness import AgentProcess, write_config
from support import free_port, subscriber
from test_status_e2e import poll

if TYPE_CHECKING:
    from support import Broker, Pty

HALF_SENT = 1500
SERVICE_NOFILE = 1024  # what systemd gives a service without LimitNOFILE=
EVENTS = "lineside/v1/plant-a/line-3/"
SCAN = b"]d2010950110153000310LOT42\r\n"


def open_files(pid: int) -> int:
    """How many file descriptors process `pid` holds right now."""
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


async def half_sent(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """A connection that sends most of a request head and then nothing; None if refused."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n")
        await writer.drain()
    except OSError:
        return None
    return reader, writer


async def dropped(reader: asyncio.StreamReader) -> None:
    """Return once the server has closed this connection."""
    with contextlib.suppress(OSError):
        while await reader.read(4096):
            pass


@pytest.fixture
def many_files() -> None:
    """This test process holds 1,500 sockets itself: raise its own soft limit for them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = HALF_SENT + 1024
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip(f"this machine allows only {hard} open files per process")
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


@pytest.mark.timeout(240)
@pytest.mark.usefixtures("many_files")
async def test_half_sent_requests_cannot_exhaust_the_agents_files(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    port = free_port()
    config = write_config(tmp_path, broker, {"dock-in-1": ("inbound", pty)})
    config.write_text(config.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
    proc = AgentProcess(config, tmp_path / "agent.log", nofile=SERVICE_NOFILE)
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    proc.start()
    try:
        assert proc.process is not None
        pid = proc.process.pid
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=5, trust_env=False
        ) as http:

            async def healthy() -> bool:
                assert proc.process is not None
                assert proc.process.poll() is None, f"agent exited:\n{proc.log()[-3000:]}"
                with contextlib.suppress(httpx.HTTPError):
                    return (await http.get("/healthz")).status_code == 200
                return False

            await poll(healthy, "agent up", timeout=60)
            async with subscriber(broker, EVENTS + "#") as got:
                opened = await asyncio.gather(*(half_sent(port) for _ in range(HALF_SENT)))
                conns = [c for c in opened if c is not None]
                peak = open_files(pid)
                assert proc.process.poll() is None, f"agent exited:\n{proc.log()[-3000:]}"

                pty.write(SCAN)
                await got.wait_for(
                    lambda g: any(t.endswith("/goods.received") for t, _, _ in g.messages), 30
                )
                peak = max(peak, open_files(pid))
                # The server drops requests that do not arrive in time, by itself.
                async with asyncio.timeout(60):
                    await asyncio.gather(*(dropped(r) for r, _ in conns))
                await poll(healthy, "/healthz again", timeout=60)
        assert peak < SERVICE_NOFILE // 2, f"{peak} files open under the half-sent requests"
        assert "Too many open files" not in proc.log()
        assert proc.terminate() == 0
    finally:
        for _, writer in conns:
            writer.close()
        proc.kill()
