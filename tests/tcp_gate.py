"""A TCP gate between a client under test and its server: forwards while open, refuses when shut.

A broker-kill scenario counts what arrives at an independent subscriber, so the count also
depends on what the broker does with messages that come in while that subscriber is not back:
mosquitto without persistence forgets the subscription with the kill and drops them; RabbitMQ
3.10 once acknowledged 104 of 200 scans it never delivered, when the agent and the subscriber
reconnected in the same millisecond after its restart (CI, under load; the subscriber's durable
queue and binding do survive a kill, checked apart, so the cause lies in its start-up and was
not found). The scenario shuts the gate in front of the agent while the broker is down and opens
it once the subscriber has subscribed again: what is counted is then the agent's doing (it
re-sends everything not acknowledged before the kill and everything written meanwhile), not the
order of two reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from types import TracebackType


class TcpGate:
    """Forwards connections on a loopback port to `host:port` while open; see the module."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self.host = "127.0.0.1"
        self.port = 0
        self._open = True
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """The gate as a Lineside MQTT destination url."""
        return f"mqtt://{self.host}:{self.port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        self.shut()  # every link ends by itself once its sockets are aborted
        links = set(self._links)
        if links:
            _, stuck = await asyncio.wait(links, timeout=5)
            for task in stuck:  # not expected; cancelled, asyncio logs it
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        await self._server.wait_closed()

    def shut(self) -> None:
        """Drop every forwarded connection and refuse new ones until `open()`."""
        self._open = False
        for writer in list(self._writers):
            writer.transport.abort()

    def open(self) -> None:
        """Forward new connections again."""
        self._open = True

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        try:
            if not self._open:
                writer.transport.abort()
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self._target)
            except OSError:
                writer.transport.abort()
                return
            self._writers.update((writer, up_writer))
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(_pipe(reader, up_writer))
                    group.create_task(_pipe(up_reader, writer))
            finally:
                self._writers.difference_update((writer, up_writer))
        finally:
            self._links.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until either end goes, then abort the other side (the client sees the loss)."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
