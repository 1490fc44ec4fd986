"""Supervision of the agent's long-lived tasks: restart on any error, with backoff, visibly.

Every long-lived task (devices, destinations, the status page, the command listener, the
monitor, reconciliation, retention) runs under `supervise`. When it fails it is restarted with
full-jitter backoff, and its error is kept for the status page and /healthz (503 while it waits
to restart). Its own error family (a driver's `DriverError`, a sink's `SyncError`) is expected
trouble: one warning line. Any other exception is a bug met on odd input — it is logged with its
traceback, and the task is restarted all the same: nothing a device or a peer on the network
sends may end the process and stop every other line with it. Cancellation is shutdown and is
never swallowed; `stop_tasks` cancels tasks at shutdown and makes sure they end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from agent.text import shown
from drivers.backoff import full_jitter

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger(__name__)

# How long a cancelled task may take to end before it is cancelled again (see `stop_tasks`):
# longer than a clean exit takes (an MQTT sink's offline-state publish waits up to its
# publish_timeout, 10 s by default).
RECANCEL_S = 15.0

ERROR_TEXT_MAX = 300
"""The kept error is cut to this many characters (an exception may quote a whole payload)."""

RESTART_BASE_S = 0.5
"""The first restart waits up to this long; each failure in a row 1.5 times more (`cap` at most)."""


@dataclass(slots=True)
class TaskRecord:
    """What the status page shows about one supervised task."""

    name: str
    running: bool = False
    restarts: int = 0
    last_error: str | None = None
    last_error_time: datetime | None = None


def error_text(exc: BaseException) -> str:
    """An exception as the status page shows it: type and message, escaped and cut."""
    text = shown(f"{type(exc).__name__}: {exc}")
    return text if len(text) <= ERROR_TEXT_MAX else text[: ERROR_TEXT_MAX - 3] + "..."


async def supervise(
    record: TaskRecord,
    run: Callable[[], Awaitable[None]],
    errors: tuple[type[Exception], ...],
    *,
    cap: float = 30.0,
    on_change: Callable[[], None] | None = None,
) -> None:
    """Run `run()` for ever, restarting it with backoff whenever it fails.

    `errors` is the task's own error family, logged as one line; any other exception is logged
    with its traceback. `on_change` is called when the task stops or starts again.
    """
    attempt = 0
    while True:
        started = time.monotonic()
        record.running = True
        if record.restarts and on_change is not None:
            on_change()
        try:
            await run()
        except Exception as exc:  # any failure restarts it; cancellation is no Exception
            record.running = False
            record.restarts += 1
            record.last_error = error_text(exc)
            record.last_error_time = datetime.now(UTC)
            if on_change is not None:
                on_change()
            if time.monotonic() - started > 60:  # noqa: PLR2004 (a long healthy run resets backoff)
                attempt = 0
            delay = full_jitter(attempt, base_s=RESTART_BASE_S, cap_s=cap)
            attempt += 1
            if isinstance(exc, errors):
                log.warning("%s failed (%s); restarting in %.1f s", record.name, exc, delay)
            else:
                log.exception("%s failed unexpectedly; restarting in %.1f s", record.name, delay)
            await asyncio.sleep(delay)
        else:
            record.running = False
            log.info("%s finished", record.name)
            return


async def stop_tasks(
    tasks: Sequence[asyncio.Task[None]], *, recancel_s: float = RECANCEL_S
) -> None:
    """Cancel `tasks` and wait until they end, cancelling again any still running after a while.

    Python 3.11's `asyncio.wait_for` (which aiomqtt awaits SUBACKs and PUBACKs with) drops a
    cancellation that arrives just as the awaited operation completes (CPython gh-86296, fixed
    in 3.12): a task that lost its cancellation there would keep the agent from ever stopping.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=recancel_s)
        for task in pending:
            log.warning(
                "task %s still running %g s after its cancellation; cancelling it again",
                task.get_name(),
                recancel_s,
            )
