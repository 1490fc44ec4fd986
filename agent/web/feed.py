"""The page's live stream (`GET /api/stream`): one serialised snapshot per tick for every stream.

`StatusFeed.run()` is a long-lived task (the runtime runs it supervised as `status-feed`; a
test runs it itself): it waits until the view changes, serialises the snapshot once and hands
the same bytes to every open stream, at most once per `min_interval_s` however busy the line
is. While nobody watches, nothing is serialised. At most `max_streams` streams are open at once;
one more is answered 503 with `Retry-After`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from pydantic import TypeAdapter
from starlette.responses import StreamingResponse

from agent.web.middleware import refuse
from agent.web.view import AgentStatus

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from agent.web.middleware import Receive, Scope, Send
    from agent.web.view import StatusView

log = logging.getLogger(__name__)

STREAM_MIN_INTERVAL_S = 0.5  # at most ~2 pushes a second, however busy the line is
STREAM_HEARTBEAT_S = 15.0
STREAM_RETRY_AFTER_S = 10

_status_json = TypeAdapter(AgentStatus)


class StatusFeed:
    """Serialises the snapshot once per tick for all live streams, and counts them."""

    def __init__(
        self,
        view: StatusView,
        *,
        max_streams: int = 32,
        min_interval_s: float = STREAM_MIN_INTERVAL_S,
        heartbeat_s: float = STREAM_HEARTBEAT_S,
    ) -> None:
        self._view = view
        self.max_streams = max_streams
        self._min_interval_s = min_interval_s
        self._heartbeat_s = heartbeat_s
        self._frame: bytes | None = None
        self._seq = 0
        self._published = asyncio.Event()
        self._watched = asyncio.Event()
        self._streams = 0
        self._closing = False

    @property
    def streams(self) -> int:
        """How many live streams are open."""
        return self._streams

    async def run(self) -> None:
        """Publish a frame whenever the view changes (rate-limited) while anybody watches."""
        version = -1
        while True:
            if not self._streams:
                self._frame, version = None, -1  # a new watcher gets a fresh snapshot at once
                self._watched.clear()
                await self._watched.wait()
            version = await self._view.wait_changed(version)
            self._publish(
                b"event: status\ndata: %b\n\n" % _status_json.dump_json(self._view.status())
            )
            await asyncio.sleep(self._min_interval_s)

    def open(self) -> None:
        """Take streams again (a server starts, or starts again after a failure)."""
        self._closing = False

    def close(self) -> None:
        """End every open stream and refuse new ones (the server is stopping)."""
        self._closing = True
        self._wake()

    def response(self) -> StreamingResponse:
        """The answer to one `GET /api/stream`."""
        return _LiveStream(self)

    # --- what a stream uses ------------------------------------------------------------------

    def join(self) -> bool:
        """Take a stream slot; False when all are taken or the server is stopping."""
        if self._closing or self._streams >= self.max_streams:
            return False
        self._streams += 1
        self._watched.set()
        return True

    def leave(self) -> None:
        """Give a stream slot back."""
        self._streams -= 1

    async def frames(self) -> AsyncIterator[bytes]:
        """What one stream sends: the newest frame whenever there is one, else heartbeats."""
        yield b"retry: 2000\n\n"
        sent = 0
        while not self._closing:
            if self._frame is not None and self._seq != sent:
                sent = self._seq
                yield self._frame
                continue
            published = self._published
            try:
                async with asyncio.timeout(self._heartbeat_s):
                    await published.wait()
            except TimeoutError:
                yield b": heartbeat\n\n"

    def _publish(self, frame: bytes) -> None:
        self._seq += 1
        self._frame = frame
        self._wake()

    def _wake(self) -> None:
        published, self._published = self._published, asyncio.Event()
        published.set()


class _LiveStream(StreamingResponse):
    """A stream holding one of the feed's slots for exactly as long as it is being answered."""

    def __init__(self, feed: StatusFeed) -> None:
        super().__init__(
            feed.frames(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self._feed = feed

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        if not self._feed.join():
            log.debug("live stream refused: %d open", self._feed.streams)
            retry = [(b"retry-after", str(STREAM_RETRY_AFTER_S).encode())]
            await refuse(send, 503, "too many live streams", retry)
            return
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._feed.leave()
