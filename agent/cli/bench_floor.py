"""The floor under the line-rate figures: what a bare CPython asyncio process costs per message.

At 20 or 100 scans/s every event travels alone, and a process that sleeps between messages
pays for each wake-up (the kernel's, the event loop's, cold caches) whatever it does. To read
`paced_cpu_us_per_event_<rate>` against something measured in the same run, `measure_floor_cpu`
starts two minimal servers as processes of their own, on the same Python, and plays their
client at the same rates, reading their CPU time from /proc like the agent's:

- `echo`: an asyncio TCP server that answers each line with one byte (a good read);
- `commit`: the same, but each line is first committed to SQLite through aiosqlite (WAL,
  `synchronous = FULL`, one INSERT in autocommit on the connection's thread), as the agent's
  outbox stores an event before its good read.

Figures: `floor_echo_cpu_us_per_event_<rate>`, `floor_commit_cpu_us_per_event_<rate>`. The
server runs as `python -m agent.cli.bench_floor MODE PORT DB`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING

from agent.cli.bench_paced import process_cpu_s
from agent.cli.demo_broker import free_port

if TYPE_CHECKING:
    from pathlib import Path

MODES = ("echo", "commit")
START_TIMEOUT_S = 30.0
SETTLE_S = 1.0
READ = b"]d201095011015300031727123110L0001\x1d2100000001\r\n"


async def _serve(mode: str, port: int, db_path: str) -> None:
    """The floor server: one byte back per line, after a durable INSERT in `commit` mode."""
    import aiosqlite  # noqa: PLC0415 (only the server process needs it)

    db = await aiosqlite.connect(db_path, isolation_level=None)
    await db.execute("PRAGMA journal_mode = WAL")
    await db.execute("PRAGMA synchronous = FULL")
    await db.execute("CREATE TABLE IF NOT EXISTS reads (seq INTEGER PRIMARY KEY, payload BLOB)")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            if mode == "commit":
                await db.execute("INSERT INTO reads (payload) VALUES (?)", (line,))
            writer.write(b"\x06")

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


async def _one(
    mode: str, workdir: Path, rates: tuple[float, ...], seconds: float
) -> dict[str, float]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.cli.bench_floor",
        mode,
        str(port),
        str(workdir / f"floor-{mode}.db"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    figures: dict[str, float] = {}
    try:
        assert process.stdout is not None
        async with asyncio.timeout(START_TIMEOUT_S):
            await process.stdout.readline()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(SETTLE_S)
        for rate in rates:
            count = max(1, int(rate * seconds))
            cpu0, t0 = process_cpu_s(process.pid), time.monotonic()
            for i in range(count):
                writer.write(READ)
                await reader.readexactly(1)
                await asyncio.sleep(max(0.0, t0 + (i + 1) / rate - time.monotonic()))
            us = (process_cpu_s(process.pid) - cpu0) / count * 1e6
            figures[f"floor_{mode}_cpu_us_per_event_{rate:g}"] = us
        writer.close()
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
    return figures


async def measure_floor_cpu(
    workdir: Path, *, rates: tuple[float, ...], seconds: float
) -> dict[str, float]:
    """CPU per message of the bare echo and the echo with a commit, at each rate."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    figures: dict[str, float] = {}
    for mode in MODES:
        figures.update(await _one(mode, workdir, rates, seconds))
    return figures


def main(argv: list[str]) -> int:
    """`python -m agent.cli.bench_floor MODE PORT DB`: run one floor server until killed."""
    mode, port, db_path = argv
    if mode not in MODES:
        sys.stderr.write(f"mode must be one of {', '.join(MODES)}, not {mode!r}\n")
        return 2
    asyncio.run(_serve(mode, int(port), db_path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
