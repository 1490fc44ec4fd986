"""A ZPL label printer on a TCP port, for tests and the demo: it keeps jobs and answers `~HS`.

`ZplPrinterSimulator` listens like a Zebra's raw port (9100 on a real one; a free loopback port
by default). It cuts what it receives into jobs (`^XA … ^XZ`, kept in `jobs`) and answers each
`~HS` from its flags: `paper_out`, `ribbon_out`, `head_open`, `paused`. It can go silent:

- `silent`: connections are accepted and read, `~HS` is never answered;
- `silent_on_fault`: silent while paper or ribbon is out or the head is open, as current Zebra
  firmware is (otherwise those flags are reported in the answer, as older firmware does);
- `hang_up`: every connection is closed as soon as it is accepted or sends anything.

`on_job` is called with each job as it arrives (a test turns paper out "while printing").
`stop()` and `start()` again on the same port is a printer restart. A format larger than 1 MiB
ends the connection. Run it alone with `python -m drivers.printers.zpl_sim --port 9100`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Self

from drivers.printers.host_status import HostStatus, format_host_status

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

log = logging.getLogger(__name__)

MAX_FORMAT_BYTES = 1 << 20
_TOKEN = re.compile(rb"\^XA|\^XZ|~HS", re.IGNORECASE)


class ZplPrinterSimulator:
    """A simulated ZPL printer: `async with ZplPrinterSimulator() as sim:` then `sim.url`."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.paper_out = False
        self.ribbon_out = False
        self.head_open = False
        self.paused = False
        self.silent = False
        self.silent_on_fault = False
        self.hang_up = False
        self.on_job: Callable[[bytes], None] | None = None
        self.jobs: list[bytes] = []
        self.status_requests = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Condition()

    @property
    def url(self) -> str:
        """The printer's URL for `ZplPrinterSettings.url`."""
        return f"tcp://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether it listens."""
        return self._server is not None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen (on the same port as before after a `stop`)."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.debug("printer simulator on %s", self.url)

    async def stop(self) -> None:
        """Stop listening and drop every connection (a printer switched off)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.close()
        await server.wait_closed()
        if self._handlers:  # Python 3.11's wait_closed does not wait for the connections
            await asyncio.wait(self._handlers)

    def status(self) -> HostStatus:
        """The host status this printer reports now."""
        return HostStatus(
            paper_out=self.paper_out,
            paused=self.paused,
            label_length_dots=1218,
            formats_in_buffer=0,
            buffer_full=False,
            partial_format=False,
            corrupt_ram=False,
            under_temperature=False,
            over_temperature=False,
            head_open=self.head_open,
            ribbon_out=self.ribbon_out,
            thermal_transfer=False,
            print_mode=2,
            labels_remaining=0,
        )

    @property
    def answers(self) -> bool:
        """Whether a `~HS` gets an answer now."""
        fault = self.paper_out or self.ribbon_out or self.head_open
        return not (self.silent or (self.silent_on_fault and fault))

    async def wait_for_jobs(self, count: int, timeout: float = 10) -> list[bytes]:  # noqa: ASYNC109
        """Wait until `count` jobs arrived; return them."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.jobs) >= count)
        return self.jobs[:count]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        splitter = _Splitter()
        try:
            while not self.hang_up:
                chunk = await reader.read(4096)
                if not chunk or self.hang_up:
                    break
                for job in splitter.feed(chunk):
                    if job is None:
                        await self._answer(writer)
                    else:
                        await self._store(job)
                if splitter.pending > MAX_FORMAT_BYTES:
                    log.warning("printer simulator: a format over %d bytes", MAX_FORMAT_BYTES)
                    break
        except OSError as exc:
            log.debug("printer simulator: connection lost: %s", exc)
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _answer(self, writer: asyncio.StreamWriter) -> None:
        self.status_requests += 1
        if self.answers:
            writer.write(format_host_status(self.status()))
            await writer.drain()

    async def _store(self, job: bytes) -> None:
        self.jobs.append(job)
        log.info("printer simulator: job %d received (%d bytes)", len(self.jobs), len(job))
        if self.on_job is not None:
            self.on_job(job)
        async with self._changed:
            self._changed.notify_all()


class _Splitter:
    """Cuts a byte stream into jobs (`^XA … ^XZ`) and status requests, across chunk borders."""

    def __init__(self) -> None:
        self.buffer = b""
        self.scanned = 0  # tokens before this offset were handled
        self.start: int | None = None  # offset of the open format's ^XA

    @property
    def pending(self) -> int:
        """Bytes held for a format not complete yet."""
        return len(self.buffer)

    def feed(self, chunk: bytes) -> list[bytes | None]:
        """The jobs (bytes) and status requests (None) completed by `chunk`, in order."""
        self.buffer += chunk
        found: list[bytes | None] = []
        for token in _TOKEN.finditer(self.buffer, self.scanned):
            word = token.group().upper()
            if word == b"~HS":
                found.append(None)  # a printer acts on control commands as they arrive
            elif word == b"^XA" and self.start is None:
                self.start = token.start()
            elif word == b"^XZ" and self.start is not None:
                found.append(self.buffer[self.start : token.end()])
                self.start = None
            self.scanned = token.end()
        # Keep the open format, or else two bytes that may begin a token cut in two.
        keep = self.start if self.start is not None else max(self.scanned, len(self.buffer) - 2)
        self.buffer = self.buffer[keep:]
        self.scanned = max(0, self.scanned - keep)
        if self.start is not None:
            self.start = 0
        return found


async def _main(args: argparse.Namespace) -> None:
    sim = ZplPrinterSimulator(host=args.host, port=args.port)
    saved = Path(args.save) if args.save else None

    def save(job: bytes) -> None:
        if saved is not None:
            (saved / f"job-{len(sim.jobs):04d}.zpl").write_bytes(job)

    if saved is not None:
        saved.mkdir(parents=True, exist_ok=True)
    sim.on_job = save
    async with sim:
        print(f"ZPL printer simulator on {sim.url}", flush=True)  # noqa: T201 (a CLI's output)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """Run a simulated printer until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=9100, help="TCP port (0: a free one)")
    parser.add_argument("--save", default=None, help="directory to write each job to")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
