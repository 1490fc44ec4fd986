"""The destination end-to-end tests' peers: a real HTTP receiver, destination config snippets,
and what the agent's status and an MQTT subscriber say about each destination.

The receiver is a small Starlette app served by uvicorn on a free loopback port, switchable
between up, 503, 422 and slow (see `Receiver`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support import free_port, wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Generator
    from pathlib import Path

    from starlette.requests import Request
    from support import Collected

    from agent.runtime.agent import Agent
    from agent.web.view import DestinationStatus


EVENTS = "lineside/v1/plant-a/line-3/"
Mode = Literal["up", "down", "reject", "slow"]


# -- a real HTTP receiver ----------------------------------------------------------------------


class _QuietServer(uvicorn.Server):
    """uvicorn without its SIGINT/SIGTERM handlers (pytest owns the process's signals)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None]:
        yield


@dataclass
class Receiver:
    """What the HTTP receiver (a WMS/ERP stand-in) got, and how it answers now.

    `up` accepts (2xx) and de-duplicates batches by Idempotency-Key; `down` answers 503 with
    `Retry-After: 1`; `reject` answers 422; `slow` holds each request until `release` is set,
    then accepts it. With `echo`, the 503 and 422 answers first quote the data of the events
    sent, as many APIs' validation errors do.
    """

    port: int = field(default_factory=free_port)
    mode: Mode = "up"
    echo: bool = False
    held: int = 0  # requests held in `slow` mode so far
    release: asyncio.Event = field(default_factory=asyncio.Event)  # lets held requests go on
    accepted: list[dict[str, Any]] = field(default_factory=list)  # events, first delivery only
    keys: list[str] = field(default_factory=list)  # Idempotency-Key of each accepted batch
    duplicates: list[str] = field(default_factory=list)  # keys seen again
    refused: int = 0  # requests answered with an error
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    async def handle(self, request: Request) -> Response:
        key = request.headers.get("idempotency-key", "")
        body = await request.body()
        try:
            quoted = {"input": [e.get("data") for e in json.loads(body)]} if self.echo else {}
            if self.mode == "down":
                self.refused += 1
                answer = {**quoted, "error": "maintenance"}
                return JSONResponse(answer, 503, {"Retry-After": "1"})
            if self.mode == "reject":
                self.refused += 1
                return JSONResponse({**quoted, "error": "unknown site plant-a"}, 422)
            if self.mode == "slow":
                self.held += 1
                self.changed.set()
                await self.release.wait()
            if request.headers.get("content-type") != "application/json" or not key:
                return JSONResponse({"error": "bad request"}, 400)
            if key in self.keys:
                self.duplicates.append(key)
            else:
                events = json.loads(body)
                first, last = key.split("..")
                assert (events[0]["id"], events[-1]["id"]) == (first, last)
                self.keys.append(key)
                self.accepted.extend(events)
            return JSONResponse({"ok": True}, 200)
        finally:
            self.changed.set()

    async def wait_for(self, predicate: Callable[[Receiver], bool], timeout: float = 20) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    """Serve `receiver` on its port while the block runs (stop it to make it "not listening")."""
    app = Starlette(routes=[Route("/events", receiver.handle, methods=["POST"])])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=receiver.port, lifespan="off", log_config=None
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(), name="test-http-receiver")
    try:
        await wait_until(lambda: server.started or task.done(), what="receiver listening")
        if task.done():
            await task
        yield receiver
    finally:
        receiver.release.set()  # held requests end, so that the server can shut down
        server.should_exit = True
        await task


# -- helpers -----------------------------------------------------------------------------------


def http_destination(receiver: Receiver, name: str = "erp", types: str = '["*"]') -> str:
    return (
        f'[[destinations]]\nname = "{name}"\nkind = "http"\nurl = "{receiver.url}"\n'
        f"types = {types}\ntimeout_s = 10\n"
    )


def file_destination(
    directory: Path, *, fmt: str = "csv", per_file: int = 5, types: str = '["*"]'
) -> str:
    return (
        f'[[destinations]]\nname = "qms-drop"\nkind = "file"\ndir = "{directory}"\n'
        f'format = "{fmt}"\nmax_events_per_file = {per_file}\ntypes = {types}\n'
        "max_file_age_s = 0.3\n"  # part-full files roll soon (the default waits 60 s)
    )


class Arrivals:
    """Scans seen at an MQTT subscriber, looked at incrementally (no re-parse per check)."""

    def __init__(self, got: Collected) -> None:
        self._got = got
        self._looked = 0
        self.raws: list[str] = []

    def update(self) -> list[str]:
        messages = self._got.messages
        for topic, payload, _ in messages[self._looked :]:
            if topic.startswith(EVENTS) and not topic.endswith("/state"):
                event = json.loads(payload)
                raw = event["data"].get("raw")
                if raw is not None:
                    self.raws.append(str(raw))
        self._looked = len(messages)
        return self.raws


def destination(agent: Agent, name: str) -> DestinationStatus:
    """The status view's entry for destination `name`."""
    return next(d for d in agent.view.status().destinations if d.name == name)


def outbox_seqs(receiver: Receiver) -> list[int]:
    """The outbox seq of each event the receiver accepted, in arrival order."""
    return [int(e["seq"]) for e in receiver.accepted]
