"""The delivery cursors an outbox holds: one per destination, current in memory, persisted lazily.

`Cursors` is the outbox's bookkeeping of where each destination is: its cursor (the highest seq
it acknowledged contiguously), which cursors moved since they were last written (persisted with
the next commit, or by the writer within `CURSOR_PERSIST_DELAY_S` when no commit comes), and
each destination's `Generation` (rewinds and releases: "look again" for its publisher). The
outbox writes what `take_moved` hands it in its transactions, and hands it back with
`put_back` when a transaction fails. Nothing here touches the database.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

CURSOR_PERSIST_DELAY_S = 0.05


class Generation(NamedTuple):
    """How often a destination's cursor was rewound and its quarantine released (wake-ups)."""

    rewinds: int
    releases: int


class Cursors:
    """Every destination's cursor and generation; `persist_due()` is called when moved ones wait."""

    def __init__(self, destinations: Iterable[str], *, persist_due: Callable[[], None]) -> None:
        self.seqs: dict[str, int] = {}
        """Destination → cursor, as delivered now (the database may be up to 50 ms behind)."""
        self.destinations: set[str] = set(destinations)
        self._moved: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._generations: dict[str, Generation] = {}
        self._persist_due = persist_due

    def load(self, rows: Iterable[tuple[str, int]]) -> None:
        """The cursors as committed (at open): every one names a destination."""
        self.seqs.update(rows)
        self.destinations.update(self.seqs)

    def generation(self, dest: str) -> Generation:
        """Counts of rewinds and releases of `dest`: a change means "look again"."""
        return self._generations.get(dest, Generation(0, 0))

    def advance(self, dest: str, seq: int) -> None:
        """Move `dest`'s cursor forward to `seq` (never back); persisted within 50 ms."""
        self.destinations.add(dest)
        if seq <= self.seqs.get(dest, 0):
            return
        self.seqs[dest] = seq
        self._moved.add(dest)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(
                CURSOR_PERSIST_DELAY_S, self._persist_due
            )

    def rewind(self, dest: str, seq: int) -> None:
        """Set `dest`'s cursor to `seq`, anywhere, and count a rewind (the caller persists)."""
        if seq < 0:
            raise ValueError(f"a cursor cannot be negative: {seq}")
        self.destinations.add(dest)
        self.seqs[dest] = seq
        self._moved.add(dest)
        rewinds, releases = self.generation(dest)
        self._generations[dest] = Generation(rewinds + 1, releases)

    def released(self, dest: str) -> None:
        """Count a release from `dest`'s quarantine."""
        rewinds, releases = self.generation(dest)
        self._generations[dest] = Generation(rewinds, releases + 1)

    @property
    def moved(self) -> bool:
        """Whether some cursor moved since it was last handed out to be written."""
        return bool(self._moved)

    def take_moved(self) -> list[tuple[str, int]]:
        """The moved cursors as (dest, seq) rows to write now; they count as written."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        rows = [(d, self.seqs[d]) for d in self._moved]
        self._moved.clear()
        return rows

    def put_back(self, rows: Iterable[tuple[str, int]]) -> None:
        """Rows whose transaction failed: written with the next one."""
        self._moved.update(d for d, _ in rows)

    def lowest(self) -> int:
        """The smallest cursor of every known destination (0 with none)."""
        return min((self.seqs.get(d, 0) for d in self.destinations), default=0)
