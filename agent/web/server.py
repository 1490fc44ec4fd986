"""Serving the status app with uvicorn inside the agent's own event loop, within bounds.

uvicorn's `Server.serve()` installs SIGINT/SIGTERM handlers and owns the process's shutdown;
in the agent the runtime owns signals, so `StatusServer` drives the server's own steps
(`startup`, `main_loop`, `shutdown`) itself and `_EmbeddedServer` never touches signal handlers.
Leaving the context (or cancelling `serve`) ends live streams, closes the listening socket and
waits a bounded time for open requests.

The server speaks HTTP/1.1 through `agent.web.protocol.BoundedH11Protocol`: at most
`max_connections` connections, each owing a complete request within `request_timeout_s`,
idle kept-alive connections closed after `keep_alive_s`; no WebSocket upgrades. The listen
backlog is small because asyncio accepts up to that many connections per loop turn before any of
them can be refused: it bounds the descriptors a burst of connections can take at once.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Self

import uvicorn

from agent.web.feed import StatusFeed
from agent.web.protocol import BoundedConfig

if TYPE_CHECKING:
    from collections.abc import Generator
    from types import TracebackType

    from fastapi import FastAPI

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 128
REQUEST_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
STALLED_READER_S = 30.0
BACKLOG = 64


class StatusServerError(Exception):
    """The status server cannot run (the address is taken, say)."""


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None]:
        yield


class StatusServer:
    """Async context manager that serves `app` on `host:port` while the block runs.

    `port=0` picks a free port; `port` then tells which one. `serve_forever()` returns only
    when the server is asked to stop; cancel it to stop. The bounds are described in the
    module docstring.
    """

    def __init__(
        self,
        app: FastAPI,
        *,
        host: str,
        port: int,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        shutdown_timeout_s: float = 3.0,
        max_connections: int = MAX_CONNECTIONS,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        keep_alive_s: int = KEEP_ALIVE_S,
        stalled_reader_s: float = STALLED_READER_S,
    ) -> None:
        self._app = app
        self._host = host
        self._config = BoundedConfig(
            app,
            max_connections=max_connections,
            request_timeout_s=request_timeout_s,
            stalled_reader_s=stalled_reader_s,
            host=host,
            port=port,
            ws="none",  # the page uses server-sent events; no upgrade path to guard
            # No proxy in front is supported: X-Forwarded-* from a local process must not name
            # the client the login throttle and the audit log see.
            proxy_headers=False,
            backlog=BACKLOG,
            timeout_keep_alive=keep_alive_s,
            lifespan="off",  # the runtime owns startup and shutdown, not the app
            log_config=None,  # only the CLI configures logging
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=int(max(1, shutdown_timeout_s)),
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
        )
        self._server = _EmbeddedServer(self._config)

    @property
    def port(self) -> int:
        """The port the server listens on."""
        sockets = self._server.servers[0].sockets if self._server.servers else ()
        if not sockets:
            raise StatusServerError("the status server is not listening")
        return int(sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        """How many client connections are open right now."""
        return len(self._server.server_state.connections)

    @property
    def url(self) -> str:
        """The page's address."""
        scheme = "https" if self._config.ssl_certfile else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self.port}/"

    async def __aenter__(self) -> Self:
        feed = getattr(self._app.state, "feed", None)
        if isinstance(feed, StatusFeed):
            feed.open()  # after a restart of the server on the same app
        self._config.load()
        self._server.lifespan = self._config.lifespan_class(self._config)
        try:
            await self._server.startup()
        except SystemExit as exc:  # uvicorn exits the process when it cannot bind
            msg = f"cannot serve the status page on {self._host}:{self._config.port}"
            raise StatusServerError(msg) from exc
        log.info("status page on %s", self.url)
        return self

    async def serve_forever(self) -> None:
        """Serve until `stop()` is called (or the task is cancelled)."""
        await self._server.main_loop()

    def stop(self) -> None:
        """Ask `serve_forever` to return."""
        self._server.should_exit = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        feed = getattr(self._app.state, "feed", None)
        if isinstance(feed, StatusFeed):
            feed.close()  # live streams end, or shutdown would wait for them
        self._server.should_exit = True
        # Runs to the end even when we got here by cancellation: the socket must be closed.
        await self._server.shutdown()
        log.info("status page stopped")


async def serve(app: FastAPI, host: str, port: int) -> None:
    """Serve `app` until cancelled (its live streams need `app.state.feed.run()` running too)."""
    async with StatusServer(app, host=host, port=port) as server:
        await server.serve_forever()
