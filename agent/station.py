"""A scanning station: what one scanner's reads mean, turned into committed events.

For each framed read: interpret it for the station's role (GS1 through `agent.scans`), make the
event, append it to the outbox, and only after the commit answer the scanner (good-read when
accepted, NAK when the outbox refuses it). A refused event raises the backlog alarm; a garbled
read becomes `scan.rejected` — never a crash and never a silent drop.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from agent.scans import StationRole, interpret
from sync.base import OutboxFull
from sync.faults import fault_point

if TYPE_CHECKING:
    from collections.abc import Callable

    from agent.alarms import AlarmBoard
    from agent.events import EventFactory
    from drivers.base import Scanner, ScanReading
    from sync.base import Draft, Envelope

log = logging.getLogger(__name__)


class Appender(Protocol):
    """Where committed events go (the outbox)."""

    async def append(self, draft: Draft) -> Envelope:
        """Commit one event."""
        ...


class LineScans(Protocol):
    """What a line scan needs from batch tracking."""

    async def consume(
        self, data: dict[str, object], draft: Callable[[dict[str, str]], Draft]
    ) -> Envelope:
        """Commit a material.consumed scan into the open batch (sets `data["batch"]`)."""
        ...

    async def scan_work_order(self, work_order: str) -> None:
        """A work-order barcode was scanned at the line."""
        ...

    async def scan_operator(self, badge: str) -> None:
        """An operator badge was scanned at the line."""
        ...


class ScanStation:
    """Turns one scanner's readings into events."""

    def __init__(
        self,
        scanner: Scanner,
        role: StationRole,
        *,
        factory: EventFactory,
        outbox: Appender,
        alarms: AlarmBoard,
        line: LineScans | None = None,
        work_order_prefix: str | None = None,
        operator_prefix: str | None = None,
        on_event: Callable[[Envelope, dict[str, object], str], None] | None = None,
        max_length: int = 512,
    ) -> None:
        self.scanner = scanner
        self.role = role
        self._factory = factory
        self._outbox = outbox
        self._alarms = alarms
        self._line = line
        self._wo_prefix = work_order_prefix
        self._op_prefix = operator_prefix
        self._on_event = on_event
        self._max_length = max_length

    async def run(self) -> None:
        """Read the scanner for ever (the driver reconnects by itself)."""
        async for reading in self.scanner.stream():
            await self.handle(reading)

    async def handle(self, reading: ScanReading) -> Envelope | None:
        """Interpret, commit and answer one read; returns the committed envelope, if any."""
        result = interpret(
            reading.data, self.role, max_length=self._max_length, error=reading.error
        )
        data: dict[str, object] = dict(result.data)
        source = f"scanner:{self.scanner.id}"
        raw = str(data.get("raw", ""))
        if (
            self._line is not None
            and self._wo_prefix
            and result.type == "material.consumed"
            and raw.startswith(self._wo_prefix)
            and len(raw) > len(self._wo_prefix)
        ):
            await self._line.scan_work_order(raw.removeprefix(self._wo_prefix))
            await self.scanner.reply(accepted=True)
            return None
        if (
            self._line is not None
            and self._op_prefix
            and result.type == "material.consumed"
            and raw.startswith(self._op_prefix)
            and len(raw) > len(self._op_prefix)
        ):
            await self._line.scan_operator(raw.removeprefix(self._op_prefix))
            await self.scanner.reply(accepted=True)
            return None

        def draft(state: dict[str, str]) -> Draft:
            keys = result.keys
            if data.get("batch"):  # a consumed material: findable by the batch it went into
                keys = (*keys, ("batch", str(data["batch"])))
            return self._factory.draft(result.type, source, data, keys=keys, state=state)

        try:
            if result.type == "material.consumed" and self._line is not None:
                envelope = await self._line.consume(data, draft)
            else:
                if result.type == "material.consumed":
                    data["batch"] = None
                envelope = await self._outbox.append(draft({}))
        except OutboxFull as exc:
            self._alarms.raise_("backlog", "backlog", f"new events refused: {exc}")
            log.error("scanner %s: read refused: %s", self.scanner.id, exc)  # noqa: TRY400 (expected)
            await self.scanner.reply(accepted=False)
            return None
        self._alarms.clear("backlog")
        if result.type == "scan.rejected":
            log.info("scanner %s: rejected read: %s", self.scanner.id, data.get("reason"))
        log.debug("scanner %s: seq %d %s %r", self.scanner.id, envelope.seq, result.type, data)
        fault_point("station.before_ack")
        await self.scanner.reply(accepted=result.type != "scan.rejected")
        if self._on_event is not None:
            self._on_event(envelope, data, source)
        return envelope
