"""The event loop a command runs on: uvloop where it is installed, else asyncio's own.

uvloop (MagicStack; libuv underneath, the loop uvicorn picks by default) runs the event loop's
own work in C: the ready queue, timers, socket readiness and the transports' reads and writes.
The agent's hot path wakes the loop a dozen times per scan (the read, the commit's hand-back
from the SQLite thread, the publish, the PUBACK, the cursor), so that work is a large share of
what a scan costs; `lineside bench` measures both loops in one run (the README's bench section).

`LINESIDE_EVENT_LOOP=asyncio` selects asyncio's own loop instead (to compare, or should uvloop
misbehave on some platform); `uvloop` asks for uvloop and fails if it is missing; unset or
`auto` uses uvloop when it can be imported.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from typing import Any

T = TypeVar("T")

ENV = "LINESIDE_EVENT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")


class EventLoopChoiceError(ValueError):
    """`LINESIDE_EVENT_LOOP` names no loop this process can run."""


def loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for the chosen loop (None: asyncio's default)."""
    choice = (choice if choice is not None else os.environ.get(ENV, "auto")).strip() or "auto"
    if choice not in CHOICES:
        msg = f"{ENV} must be one of {', '.join(CHOICES)}, not {choice!r}"
        raise EventLoopChoiceError(msg)
    if choice == "asyncio":
        return None
    try:
        import uvloop  # noqa: PLC0415 (optional at run time: asyncio's loop is the fallback)
    except ImportError:
        if choice == "uvloop":
            msg = f"{ENV}=uvloop, but uvloop is not installed (pip install uvloop)"
            raise EventLoopChoiceError(msg) from None
        return None
    return uvloop.new_event_loop


def loop_name(choice: str | None = None) -> str:
    """`uvloop` or `asyncio`: the loop `run` picks (for the bench's figures)."""
    return "asyncio" if loop_factory(choice) is None else "uvloop"


def run(main: Coroutine[Any, Any, T], *, choice: str | None = None) -> T:
    """`asyncio.run(main)` on the chosen loop."""
    try:
        factory = loop_factory(choice)
    except EventLoopChoiceError:
        main.close()  # never run: no "never awaited" warning after the one-line refusal
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
