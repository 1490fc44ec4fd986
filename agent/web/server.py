"""Serving the status app with uvicorn inside the agent's own event loop.

uvicorn's `Server.serve()` installs SIGINT/SIGTERM handlers and owns the process's shutdown;
in the agent the runtime owns signals, so `StatusServer` drives the server's own steps
(`startup`, `main_loop`, `shutdown`) itself and `_EmbeddedServer` never touches signal handlers.
Leaving the context (or cancelling `serve`) ends live streams, closes the listening socket and
waits a bounded time for open requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Self

import uvicorn

if TYPE_CHECKING:
    from collections.abc import Generator
    from types import TracebackType

    from fastapi import FastAPI

log = logging.getLogger(__name__)


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
    when the server is asked to stop; cancel it to stop.
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
    ) -> None:
        self._app = app
        self._host = host
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
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
    def url(self) -> str:
        """The page's address."""
        scheme = "https" if self._config.ssl_certfile else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self.port}/"

    async def __aenter__(self) -> Self:
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
        closing = getattr(self._app.state, "closing", None)
        if isinstance(closing, asyncio.Event):
            closing.set()
        self._server.should_exit = True
        # Runs to the end even when we got here by cancellation: the socket must be closed.
        await self._server.shutdown()
        log.info("status page stopped")


async def serve(app: FastAPI, host: str, port: int) -> None:
    """Serve `app` until cancelled (the runtime's `status` task)."""
    async with StatusServer(app, host=host, port=port) as server:
        await server.serve_forever()
