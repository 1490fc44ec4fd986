"""A scanning station: one scanner's I/O, each read committed before it is answered.

For each framed read: ask `agent.scanning.interpret` what it means here, hand the meaning on,
and only after the commit answer the scanner (good-read when accepted, NAK when rejected or
when the outbox refuses it). A dock scan or a rejected read is committed as its own event; a
material goes to its line's batch tracker, which commits it into the open batch; a work order
or a badge goes to its line, which records it, and is answered with a good-read. A refused
event raises the backlog alarm; a garbled read becomes `scan.rejected` — never a crash and
never a silent drop. The station decides nothing itself and changes nothing it is handed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from agent.scanning.interpret import BadgeScan, Material, Rejected, WorkOrderScan, interpret
from sync.base import OutboxFull
from sync.faults import fault_point

if TYPE_CHECKING:
    from collections.abc import Callable

    from agent.alarms import AlarmBoard
    from agent.config.scanners import StationRole
    from agent.events import EventFactory
    from agent.scanning.interpret import ScanEvent, StationRules
    from drivers.base import DeviceHealth, Scanner, ScanReading
    from sync.base import Draft, Envelope

log = logging.getLogger(__name__)

_LINE_INSTRUCTIONS = (WorkOrderScan, BadgeScan)


class Appender(Protocol):
    """Where committed events go (the outbox)."""

    async def append(self, draft: Draft) -> Envelope:
        """Commit one event."""
        ...


class LineScans(Protocol):
    """What a line scan needs from its line's batch tracking."""

    async def consume(self, material: Material, source: str) -> Envelope:
        """Commit a material into the open batch (its `material.consumed` event says which)."""
        ...

    async def scan_work_order(self, work_order: str) -> None:
        """A work-order barcode was scanned at the line."""
        ...

    async def scan_operator(self, badge: str) -> None:
        """An operator badge was scanned at the line."""
        ...


class ScanStation:
    """Turns one scanner's readings into committed events.

    `line` is the batch tracking of the line `rules.line` names (None when it names none);
    `on_scan` hears of every committed read (the status page's recent scans).
    """

    def __init__(
        self,
        scanner: Scanner,
        rules: StationRules,
        *,
        factory: EventFactory,
        outbox: Appender,
        alarms: AlarmBoard,
        line: LineScans | None = None,
        on_scan: Callable[[ScanReading, ScanEvent], None] | None = None,
    ) -> None:
        if (line is None) != (rules.line is None):
            raise ValueError(f"scanner {scanner.id}: its rules and its line tracking disagree")
        self.scanner = scanner
        self.rules = rules
        self._factory = factory
        self._outbox = outbox
        self._alarms = alarms
        self._line = line
        self._on_scan = on_scan

    @property
    def role(self) -> StationRole:
        """The station's role."""
        return self.rules.role

    @property
    def health(self) -> DeviceHealth:
        """The scanner link's health."""
        return self.scanner.health

    async def run(self) -> None:
        """Read the scanner for ever (the driver reconnects by itself)."""
        async for reading in self.scanner.stream():
            await self.handle(reading)

    async def handle(self, reading: ScanReading) -> Envelope | None:
        """Interpret, commit and answer one read; returns the committed envelope, if any."""
        meaning = interpret(reading.data, self.rules, error=reading.error)
        if isinstance(meaning, _LINE_INSTRUCTIONS):
            assert self._line is not None  # rules with a line come with its tracking
            if isinstance(meaning, WorkOrderScan):
                await self._line.scan_work_order(meaning.work_order)
            else:
                await self._line.scan_operator(meaning.operator)
            await self.scanner.reply(accepted=True)
            return None
        source = f"scanner:{reading.source}"
        try:
            if type(meaning) is Material and self._line is not None:
                envelope = await self._line.consume(meaning, source)
            else:
                data = meaning.data
                if type(meaning) is Material:  # no line on this node: no batch to go into
                    data = {**data, "batch": None}
                draft = self._factory.draft(meaning.type, source, data, keys=meaning.keys)
                envelope = await self._outbox.append(draft)
        except OutboxFull as exc:
            self._alarms.backlog_refused(exc)
            log.error("scanner %s: read refused: %s", reading.source, exc)  # noqa: TRY400 (expected)
            await self.scanner.reply(accepted=False)
            return None
        self._alarms.clear("backlog")
        if type(meaning) is Rejected:  # the reason quotes the read: at DEBUG only
            log.info("scanner %s: read rejected (%s)", reading.source, meaning.rejection.code)
            log.debug("scanner %s: rejected because %s", reading.source, meaning.rejection.reason)
        log.debug("scanner %s: seq %d %s %r", reading.source, envelope.seq, meaning.type, meaning)
        fault_point("station.before_ack")
        await self.scanner.reply(accepted=type(meaning) is not Rejected)
        if self._on_scan is not None:
            self._on_scan(reading, meaning)
        return envelope
