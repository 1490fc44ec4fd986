"""Supervision of the agent's long-lived tasks: restart on the component's own error family.

A component that fails with an error of its family (a driver's `DriverError`, a sink's
`SyncError`) is restarted with full-jitter backoff, and the error is kept for the status page.
Any other exception is a bug: it propagates, ends the task group and the process (systemd
restarts it). Cancellation is shutdown and is never swallowed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


@dataclass(slots=True)
class TaskRecord:
    """What the status page shows about one supervised task."""

    name: str
    running: bool = False
    restarts: int = 0
    last_error: str | None = None
    last_error_time: datetime | None = None


def backoff(attempt: int, *, cap: float = 30.0, base: float = 0.5) -> float:
    """Full-jitter backoff: a random delay up to `base * 1.5**attempt`, capped."""
    return random.uniform(0, min(cap, base * 1.5 ** min(attempt, 20)))  # noqa: S311 (jitter, not crypto)


async def supervise(
    record: TaskRecord,
    run: Callable[[], Awaitable[None]],
    errors: tuple[type[Exception], ...],
    *,
    cap: float = 30.0,
) -> None:
    """Run `run()` for ever, restarting it with backoff when it fails with one of `errors`."""
    attempt = 0
    while True:
        started = time.monotonic()
        record.running = True
        try:
            await run()
        except errors as exc:
            record.running = False
            record.restarts += 1
            record.last_error = f"{type(exc).__name__}: {exc}"
            record.last_error_time = datetime.now(UTC)
            if time.monotonic() - started > 60:  # noqa: PLR2004 (a long healthy run resets backoff)
                attempt = 0
            delay = backoff(attempt, cap=cap)
            attempt += 1
            log.warning("%s failed (%s); restarting in %.1f s", record.name, exc, delay)
            await asyncio.sleep(delay)
        else:
            record.running = False
            log.info("%s finished", record.name)
            return
