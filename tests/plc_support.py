"""Helpers for the PLC driver tests of every protocol: a snapshot stream kept by the test."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from drivers.base import PlcSnapshot
    from drivers.plcs.polling import PollingPlc


class Stream:
    """Consumes `snapshots()` in a task of the test, keeping what it yields."""

    def __init__(self, plc: PollingPlc[Any]) -> None:
        self.plc = plc
        self.seen: list[PlcSnapshot] = []
        self.changed = asyncio.Event()

    async def run(self) -> None:
        async for snapshot in self.plc.snapshots():
            self.seen.append(snapshot)
            self.changed.set()

    async def wait_for(self, predicate: Callable[[PlcSnapshot], bool], within: float = 10) -> None:
        """Wait for a snapshot after now that satisfies `predicate`."""
        start = len(self.seen)
        async with asyncio.timeout(within):
            while not any(predicate(s) for s in self.seen[start:]):
                self.changed.clear()
                await self.changed.wait()

    def last(self, predicate: Callable[[PlcSnapshot], bool]) -> PlcSnapshot:
        """The latest snapshot seen that satisfies `predicate`."""
        return next(s for s in reversed(self.seen) if predicate(s))


@contextlib.asynccontextmanager
async def streaming(plc: PollingPlc[Any]) -> AsyncIterator[Stream]:
    stream = Stream(plc)
    async with asyncio.TaskGroup() as group:
        task = group.create_task(stream.run(), name="test:snapshots")
        try:
            yield stream
        finally:
            task.cancel()
