"""What the running agent knows right now, for the status page, /healthz and metrics.

`AgentState` holds the supervised tasks' records, the recent scans, the clock's state and a
change counter that wakes the page's live updates; the runtime writes it, the status view and
the monitor read it. A recent scan is kept as it was read and meant (the driver's
`ScanReading`, the interpreted `ScanEvent`): the one record of it, which the status view words
for the page only when a snapshot is taken.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.runtime.supervisor import TaskRecord
    from agent.scanning.interpret import Scanned
    from drivers.base import ScanReading

RECENT_SCANS = 50
"""Scans the status page lists (the newest)."""


@dataclass
class AgentState:
    """What the agent knows right now, for the status page, /healthz and metrics."""

    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    recent_scans: deque[tuple[ScanReading, Scanned]] = field(
        default_factory=lambda: deque(maxlen=RECENT_SCANS)
    )
    clock_synced: bool | None = None
    version: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def touch(self) -> None:
        """Something the page shows changed: wake every waiter."""
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_changed(self, seen: int) -> int:
        """The version as soon as it differs from `seen`."""
        while self.version == seen:
            await self._changed.wait()
        return self.version
