"""History retention: the runtime task `retention` prunes the outbox once a day.

Events older than `store.retention_days` that every destination has acknowledged are deleted
with their lookup keys (`Outbox.prune`); undelivered and quarantined events are never touched,
whatever their age, so retention can never lose an event a destination still needs. The first
prune runs a minute after start (not in the way of starting up), then every 24 hours.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

DAY_S = 86400.0
FIRST_PRUNE_AFTER_S = 60.0


class Prunable(Protocol):
    """What retention needs from the outbox."""

    async def prune(self, older_than: float) -> int:
        """Delete delivered events created before `older_than`; how many were deleted."""
        ...


class Retention:
    """Prunes delivered history older than `days` days, daily."""

    def __init__(
        self,
        outbox: Prunable,
        *,
        days: int,
        period_s: float = DAY_S,
        first_after_s: float = FIRST_PRUNE_AFTER_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if days <= 0:
            raise ValueError(f"retention days must be positive, not {days}")
        self._outbox = outbox
        self.days = days
        self._period = period_s
        self._first_after = first_after_s
        self._clock = clock
        self.pruned = 0
        self.last_run: float | None = None

    async def prune_once(self) -> int:
        """Prune now; the number of events deleted."""
        cutoff = self._clock() - self.days * DAY_S
        deleted = await self._outbox.prune(cutoff)
        self.pruned += deleted
        self.last_run = self._clock()
        log.info("retention: %d event(s) older than %d day(s) pruned", deleted, self.days)
        return deleted

    async def run(self) -> None:
        """Prune a minute after start, then every `period_s` seconds, for ever."""
        await asyncio.sleep(self._first_after)
        while True:
            await self.prune_once()
            await asyncio.sleep(self._period)
