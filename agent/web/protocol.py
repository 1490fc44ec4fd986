"""uvicorn's HTTP/1.1 protocol with the bounds uvicorn lacks, so clients cannot eat the process.

uvicorn holds a connection for as long as its client likes: one that sends half a request head
and then nothing keeps its file descriptor for ever, and enough of them take every descriptor
the agent has (the database, the broker, the scanners need them too). `BoundedH11Protocol`:

- closes a connection whose client has not delivered a complete request (head and body) within
  `request_timeout_s` of the connection's start, or of the previous answer on a kept-alive one;
- holds at most `max_connections` connections: a new one beyond that closes the connection that
  has waited longest for its client's request (half-sent or idle), or, if none is waiting, is
  itself answered 503 and closed; so a flood of half-sent requests cannot lock the page out;
- aborts a connection whose client has not read its answer for `stalled_reader_s` (a full send
  buffer), so a client that stops reading cannot hold a stream or a slot for ever.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    import asyncio

    from uvicorn.server import ServerState

log = logging.getLogger(__name__)

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 26\r\nretry-after: 5\r\nconnection: close\r\n\r\n"
    b"too many open connections\n"
)
_WAITING_FOR_CLIENT = (h11.IDLE, h11.SEND_BODY)


class BoundedConfig(uvicorn.Config):
    """uvicorn's config plus the bounds `BoundedH11Protocol` enforces."""

    def __init__(
        self,
        app: Any,
        *,
        max_connections: int,
        request_timeout_s: float,
        stalled_reader_s: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            app,
            http=BoundedH11Protocol,
            # uvicorn answers 503 from `limit_concurrency` connections or request tasks on; the
            # protocol already holds connections to max_connections, so this is the backstop
            # for tasks (at most one per connection).
            limit_concurrency=max_connections + 1,
            **kwargs,
        )
        self.max_connections = max_connections
        self.request_timeout_s = request_timeout_s
        self.stalled_reader_s = stalled_reader_s


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request deadline, a connection cap and a stalled-reader cut."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if not isinstance(config, BoundedConfig):
            raise TypeError("BoundedH11Protocol needs a BoundedConfig")
        self._bounds = config
        self._deadline: asyncio.TimerHandle | None = None
        self._stall: asyncio.TimerHandle | None = None
        self.waiting_since: float | None = None  # loop time; set while waiting for a request

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Take the connection if there is room (or room can be made), else answer 503."""
        super().connection_made(transport)
        if self._open_connections() > self._bounds.max_connections and not self._make_room():
            log.debug("refused a connection from %s: too many open", self.client)
            transport.write(_BUSY)
            transport.close()
            return
        self._watch_request()

    def data_received(self, data: bytes) -> None:
        """Feed the bytes to h11; the request deadline ends once a whole request is in."""
        super().data_received(data)
        self._watch_request()

    def on_response_complete(self) -> None:
        """After an answer on a kept-alive connection, the next request has its own deadline."""
        super().on_response_complete()
        self._watch_request()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the timers."""
        self._cancel_deadline()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """The client stopped reading: it has `stalled_reader_s` to start again."""
        super().pause_writing()
        if self._stall is None:
            self._stall = self.loop.call_later(self._bounds.stalled_reader_s, self._stalled)

    def resume_writing(self) -> None:
        """The client reads again."""
        super().resume_writing()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    # --- the bounds ----------------------------------------------------------------------------

    def drop(self) -> None:
        """Close this connection now (it waited too long, or makes room for a new one)."""
        self._cancel_deadline()
        if not self.transport.is_closing():
            self.transport.close()

    def _open_connections(self) -> int:
        return sum(1 for c in self.connections if not c.transport.is_closing())

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for its request; False if none waits."""
        waiting = [
            c
            for c in self.connections
            if isinstance(c, BoundedH11Protocol)
            and c is not self
            and c.waiting_since is not None
            and not c.transport.is_closing()
        ]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.waiting_since or 0.0)
        log.debug("closing a waiting connection from %s to make room", oldest.client)
        oldest.drop()
        return True

    def _watch_request(self) -> None:
        """Arm the deadline while the client owes a request; disarm it once the request is in."""
        waiting = not self.transport.is_closing() and self.conn.their_state in _WAITING_FOR_CLIENT
        if waiting and self._deadline is None:
            self.waiting_since = self.loop.time()
            self._deadline = self.loop.call_later(
                self._bounds.request_timeout_s, self._request_timed_out
            )
        elif not waiting:
            self._cancel_deadline()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.waiting_since = None

    def _request_timed_out(self) -> None:
        self._deadline = None
        log.debug(
            "closing a connection from %s: no complete request within %g s",
            self.client,
            self._bounds.request_timeout_s,
        )
        self.drop()

    def _stalled(self) -> None:
        self._stall = None
        log.debug("aborting a connection from %s: it stopped reading its answer", self.client)
        self.transport.abort()  # close() would wait for the unread answer to be sent
