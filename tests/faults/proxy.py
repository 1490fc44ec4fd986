"""A small loopback TCP proxy for link faults: cut every connection, refuse, delay or truncate."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Self

from support import free_port

# Modbus TCP answers: a 7-byte MBAP header, then the function code (write coil/register(s)).
MODBUS_WRITES = (b"\x05", b"\x06", b"\x0f", b"\x10")


@dataclass
class FlakyProxy:
    """Forwards 127.0.0.1:`port` to `target_port`; the test cuts, blocks and delays the link.

    With `truncate_replies` set, every chunk the target sends back loses its second half (a
    truncated frame, as a flaky serial gateway delivers). With `lose_write_replies` set, the
    target's answers to Modbus TCP writes (function codes 5, 6, 15, 16) are not passed on: the
    PLC did the write, the client never hears so.
    """

    target_port: int
    delay_s: float = 0.0
    truncate_replies: bool = False
    lose_write_replies: bool = False
    port: int = field(default_factory=free_port)
    blocked: bool = False
    cuts: int = 0
    accepted: int = 0
    _server: asyncio.Server | None = None
    _links: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()  # every pipe ends by itself once its sockets are aborted
        async with asyncio.timeout(10):
            await asyncio.gather(*self._links, return_exceptions=True)
        await self._server.wait_closed()

    def cut(self) -> None:
        """Drop every open connection at once (both directions)."""
        if self._writers:
            self.cuts += 1
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.blocked:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        self._writers.update((writer, up_writer))
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pipe(reader, up_writer))
                tg.create_task(self._pipe(up_reader, writer, replies=True))
        except* (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._links.discard(task)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, replies: bool = False
    ) -> None:
        try:
            while data := await reader.read(65536):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                if replies and self.truncate_replies:
                    data = data[: max(1, len(data) // 2)]
                if replies and self.lose_write_replies and data[7:8] in MODBUS_WRITES:
                    continue
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(OSError):
                writer.transport.abort()
