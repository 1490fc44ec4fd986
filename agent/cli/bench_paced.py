"""The CPU a real agent process spends per scan at line rates, measured from outside.

`measure_paced_cpu` starts `lineside run` as a process of its own (one TCP scanner, one MQTT
destination, its status page on), plays the scanner: a TCP server the agent connects to, sending
GS1 reads at a fixed rate and counting the good-read replies. It reads the process's CPU time
(all threads, from /proc) over each phase:

- `idle_process_cpu_percent`: connected, nothing scanned;
- `paced_cpu_us_per_event_<rate>`: CPU per event at each fixed rate (default 20/s and 100/s);
- `saturated_cpu_us_per_event`: CPU per event with reads sent as fast as the agent takes them,
  from `SCANNERS` scanners at once (each scanner's reads are committed one after the other, so
  several scanners are what lets a group commit carry more than one read).

This is the figure a line-side PC pays at the line's real rate, where each event travels
alone (no group commit, no batch to share the cost with), unlike the end-to-end run, which
measures the agent saturated.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

GS = "\x1d"
GOOD_READ = b"\x06"
CONNECT_TIMEOUT_S = 60.0
SCANNERS = 16
SETTLE_S = 2.0


@dataclass(frozen=True, slots=True)
class PacedSizes:
    """How long each phase lasts and how many reads the saturated phase sends."""

    seconds: float
    idle_s: float
    saturated: int


def _scans(count: int, offset: int) -> list[bytes]:
    """Valid inbound-dock GS1 reads (GTIN, expiry, lot, a serial unique in the run)."""
    return [
        f"]d201095011015300031727123110L{i % 997:04d}{GS}21{offset + i:08d}\r\n".encode()
        for i in range(count)
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _config(workdir: Path, broker_url: str, scanner_port: int) -> str:
    scanners = "".join(
        f"""
[[scanners]]
id = "paced-{n}"
role = "inbound"
url = "socket://127.0.0.1:{scanner_port}"
terminator = "\\r\\n"
good_read = "\\u0006"
"""
        for n in range(1, SCANNERS + 1)
    )
    return (
        scanners
        + f"""
[agent]
site = "bench"
node = "paced"
data_dir = "{workdir / "data"}"

[status]
listen = "127.0.0.1:{_free_port()}"

[[destinations]]
name = "broker"
kind = "mqtt"
url = "{broker_url}"
types = ["*"]
"""
    )


class _Scanners:
    """The scanners' end: the agent's links connect here; reads go out, good reads are counted."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.replies = 0
        self._replied = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []

    async def on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        if len(self._writers) == SCANNERS:
            self.connected.set()
        while chunk := await reader.read(4096):
            self.replies += chunk.count(GOOD_READ)
            self._replied.set()

    def send(self, data: bytes, scanner: int = 0) -> None:
        self._writers[scanner % len(self._writers)].write(data)

    async def until_replies(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.replies < count:
            left = deadline - time.monotonic()
            if left <= 0:
                msg = f"the agent answered {self.replies} of {count} reads"
                raise RuntimeError(msg)
            self._replied.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._replied.wait(), left)


def _prepare(workdir: Path, broker_url: str, scanner_port: int) -> tuple[Path, BinaryIO]:
    """The agent's config file, and its log file opened for the process."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "paced.toml"
    config.write_text(_config(workdir, broker_url, scanner_port), encoding="utf-8")
    return config, (workdir / "paced-agent.log").open("wb")


@contextlib.asynccontextmanager
async def _agent(workdir: Path, broker_url: str) -> AsyncIterator[tuple[int, _Scanners]]:
    scanner = _Scanners()
    server = await asyncio.start_server(scanner.on_connect, "127.0.0.1", 0)
    config, log = _prepare(workdir, broker_url, server.sockets[0].getsockname()[1])
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.cli",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=log,
    )
    try:
        try:
            await asyncio.wait_for(scanner.connected.wait(), CONNECT_TIMEOUT_S)
        except TimeoutError:
            msg = f"the agent did not connect to its {SCANNERS} scanners (log: {log.name})"
            raise RuntimeError(msg) from None
        yield process.pid, scanner
    finally:
        if process.returncode is None:
            process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 30)
            if process.returncode is None:
                process.kill()
                await process.wait()
        log.close()
        server.close()


async def measure_paced_cpu(
    workdir: Path, broker_url: str, *, rates: tuple[float, ...], sizes: PacedSizes
) -> dict[str, float]:
    """Idle, paced and saturated CPU of one agent process (see the module docstring)."""
    figures: dict[str, float] = {}
    async with _agent(workdir, broker_url) as (pid, scanner):
        await asyncio.sleep(SETTLE_S)
        cpu0, t0 = process_cpu_s(pid), time.monotonic()
        await asyncio.sleep(sizes.idle_s)
        idle = (process_cpu_s(pid) - cpu0) / (time.monotonic() - t0)
        figures["idle_process_cpu_percent"] = idle * 100
        sent = 0
        for rate in rates:
            count = max(1, int(rate * sizes.seconds))
            reads = _scans(count, sent)
            cpu0, t0 = process_cpu_s(pid), time.monotonic()
            for i, read in enumerate(reads):
                scanner.send(read)
                await asyncio.sleep(max(0.0, t0 + (i + 1) / rate - time.monotonic()))
            sent += count
            await scanner.until_replies(sent, 60.0)
            await asyncio.sleep(0.2)  # the last PUBACKs and cursor moves
            figures[f"paced_cpu_us_per_event_{rate:g}"] = (process_cpu_s(pid) - cpu0) / count * 1e6
        reads = _scans(sizes.saturated, sent)
        cpu0 = process_cpu_s(pid)
        for i, read in enumerate(reads):
            scanner.send(read, i)
        sent += sizes.saturated
        await scanner.until_replies(sent, 300.0)
        await asyncio.sleep(0.2)
        figures["saturated_cpu_us_per_event"] = (process_cpu_s(pid) - cpu0) / sizes.saturated * 1e6
    return figures
