"""The node's lines by id: which line a work order goes to, and each line's product.

A line is a PLC with a `[plcs.batch]` section (CONTRACTS.md "Lines: one agent, several
lines"): its `BatchTracker` keeps its open batch. A work order names its line (`line`, from the
MES command or the status page); with one line it may leave it out, with several it must say
which, and a refusal names the lines. A work order without a GTIN runs the line's own product
(`[plcs.line]` gtin, else `[line]`'s). Serial counters stay per GTIN, shared by lines that make
the same product (the trackers share one serial lock).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from agent.batches.work_orders import WorkOrder

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from agent.batches.tracker import BatchTracker
    from agent.batches.work_orders import WorkOrderCommand

log = logging.getLogger(__name__)

NO_LINE = "this agent has no PLC with batch signals"


class Lines:
    """The batch trackers of the node's lines, in config order, by line id."""

    def __init__(self, trackers: Sequence[BatchTracker]) -> None:
        self._trackers = {tracker.plc_id: tracker for tracker in trackers}

    def __iter__(self) -> Iterator[BatchTracker]:
        return iter(self._trackers.values())

    def __len__(self) -> int:
        return len(self._trackers)

    @property
    def ids(self) -> list[str]:
        """The line ids, in config order."""
        return list(self._trackers)

    def named(self, line: str | None) -> BatchTracker:
        """The line `line` names, or the only one when it names none; `ValueError` otherwise."""
        listed = ", ".join(self._trackers)
        if not self._trackers:
            raise ValueError(NO_LINE)
        if line is None:
            if len(self._trackers) > 1:
                raise ValueError(
                    f"line: required: this node has {len(self._trackers)} lines ({listed})"
                )
            return next(iter(self._trackers.values()))
        tracker = self._trackers.get(line)
        if tracker is None:
            raise ValueError(f"line: no line {line!r} on this node (lines: {listed})")
        return tracker

    async def set_work_order(self, command: WorkOrderCommand) -> BatchTracker:
        """Run a checked work order on its line; the line's product when it names no GTIN."""
        tracker = self.named(command.line)
        await tracker.set_work_order(
            WorkOrder(
                command.work_order,
                command.gtin or tracker.line.gtin,
                command.lot,
                command.planned_qty,
            )
        )
        return tracker
