"""The running agent as the status page sees it: the `StatusView` of `agent.web.view`.

The runtime hands over its parts explicitly (`StatusParts`: devices' and destinations' health,
the lines' batch state, alarms, recent scans, the monitor's findings, the outbox); a snapshot
is built from what they already keep. Nothing here reads a device or the disk on the request
path except the events and quarantine queries, which go to the outbox's reader connection,
and trace queries, which open the history read-only. The page's actions go to the same parts:
a work order to its line (`agent.batches.lines`), a re-send to its destination's publisher.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from agent import __version__
from agent.batches.work_orders import WorkOrderCommand
from agent.history.trace import trace_file
from agent.scanning.interpret import Rejected
from agent.text import validation_text
from agent.web.view import (
    AgentInfo,
    AgentStatus,
    BatchStatus,
    CompletedBatch,
    DestinationStatus,
    DeviceStatus,
    Health,
    LineBatches,
    PrinterStatus,
    QuarantinedEvent,
    RecentScan,
    UndecidedLabel,
    WorkOrderStatus,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

    from agent.alarms import AlarmBoard
    from agent.batches.lines import Lines
    from agent.batches.tracker import BatchTracker
    from agent.config.scanners import StationRole
    from agent.printing.worker import LabelPrinter
    from agent.runtime.state import AgentState
    from agent.scanning.interpret import Scanned
    from drivers.base import DeviceHealth, ScanReading
    from sync.outbox import Outbox
    from sync.publisher import Publisher


class ScannerPart(Protocol):
    """A scanning station as the page lists it (`agent.scanning.station.ScanStation`)."""

    @property
    def health(self) -> DeviceHealth:
        """The scanner link's health."""
        ...

    @property
    def role(self) -> StationRole:
        """The station's role."""
        ...


class PlcPart(Protocol):
    """A PLC link as the page lists it (`agent.batches.line.Line`)."""

    @property
    def health(self) -> DeviceHealth:
        """The PLC link's health."""
        ...

    @property
    def mode(self) -> str:
        """How it signals batches, or `watch`."""
        ...

    @property
    def last_values(self) -> dict[str, object]:
        """The values of its last poll."""
        ...


@dataclass(frozen=True, slots=True)
class StatusParts:
    """The parts of the running agent the page reads and acts on, handed over by the runtime."""

    site: str
    node: str
    state: AgentState  # started, clock, tasks, change counter, recent scans
    scanners: Sequence[ScannerPart]  # devices' health, in config order
    plcs: Sequence[PlcPart]
    lines: Lines  # the lines' batch state, and where work orders go
    publishers: Sequence[Publisher]  # destinations' health, re-sends
    destination_kinds: Mapping[str, str]  # destination name → kind
    alarms: AlarmBoard
    health_reasons: Callable[[], list[str]]  # why the agent is unhealthy (the monitor's)
    outbox: Outbox  # recent events, quarantine
    history: Path  # the outbox file, opened read-only for trace queries
    printers: Sequence[LabelPrinter] = ()  # label printers: state, undecided jobs


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


class RuntimeView:
    """Implements `agent.web.view.StatusView` over the parts of a running agent."""

    def __init__(self, parts: StatusParts) -> None:
        self._parts = parts
        self._started_mono = time.monotonic()

    def status(self) -> AgentStatus:
        """A snapshot of everything the page shows."""
        parts = self._parts
        devices = [_scanner_status(s.health, s.role) for s in parts.scanners]
        devices += [_plc_status(p) for p in parts.plcs]
        devices += [_printer_device(p) for p in parts.printers]
        destinations = [
            DestinationStatus(
                name=h.name,
                kind=parts.destination_kinds.get(h.name, "?"),
                connected=h.connected,
                delivered=h.delivered,
                backlog=h.backlog,
                backlog_bytes=h.backlog_bytes,
                oldest_undelivered_age_s=h.oldest_undelivered_age_s,
                quarantined=h.quarantined,
                last_error=h.last_error,
            )
            for h in (p.health for p in parts.publishers)
        ]
        batches = [_line_batches(tracker) for tracker in parts.lines]
        reasons = parts.health_reasons()
        state = parts.state
        return AgentStatus(
            agent=AgentInfo(
                site=parts.site,
                node=parts.node,
                version=__version__,
                started=state.started,
                uptime_s=time.monotonic() - self._started_mono,
                clock_synced=state.clock_synced,
            ),
            health=Health(ok=not reasons, reasons=list(reasons)),
            devices=devices,
            destinations=destinations,
            batch=batches[0].batch if batches else None,
            recent_batches=[done for line in batches for done in line.recent_batches],
            recent_scans=[_recent_scan(r, m) for r, m in reversed(state.recent_scans)],
            alarms=parts.alarms.active(),
            batches=batches,
            printers=[_printer_status(p) for p in parts.printers],
        )

    async def wait_changed(self, seen: int) -> int:
        """The change counter, as soon as it differs from `seen`."""
        return await self._parts.state.wait_changed(seen)

    async def events(self, *, limit: int, type: str | None) -> list[dict[str, Any]]:  # noqa: A002
        """The most recent envelopes, newest first."""
        routes = frozenset({type}) if type else None
        envelopes = await self._parts.outbox.recent(limit=limit, routes=routes)
        return [json.loads(e.payload) for e in envelopes]

    async def trace(self, code: str) -> dict[str, Any] | None:
        """The trace chain of a code, as `lineside trace --json`; None if unknown here.

        A read-only connection of its own, so a trace never queues behind (or blocks) the
        publishers on the outbox's reader connection.
        """
        return await trace_file(self._parts.history, code)

    async def set_work_order(
        self,
        work_order: str | None,
        gtin: str | None,
        lot: str | None,
        planned_qty: int | None,
        line: str | None = None,
    ) -> None:
        """Set or clear the running work order of `line` (None: the node's only line)."""
        try:  # the MES command's rules: the text rule, a GTIN-14 with its check digit, a GS1 lot
            command = WorkOrderCommand(
                work_order=work_order, gtin=gtin, lot=lot, planned_qty=planned_qty, line=line
            )
        except ValidationError as exc:
            raise ValueError(validation_text(exc)) from exc
        await self._parts.lines.set_work_order(command)
        self._parts.state.touch()

    async def acknowledge_alarm(self, alarm_id: str) -> None:
        """Mark an alarm as seen."""
        try:
            self._parts.alarms.acknowledge(alarm_id)
        except KeyError as exc:
            raise ValueError(f"no active alarm {alarm_id!r}") from exc
        self._parts.state.touch()

    def _publisher(self, name: str) -> Publisher:
        """The publisher of destination `name`; `ValueError` if there is none."""
        for publisher in self._parts.publishers:
            if publisher.name == name:
                return publisher
        raise ValueError(f"no destination named {name!r}")

    async def resend_from(self, destination: str, seq: int) -> None:
        """Re-send one destination from `seq`."""
        publisher = self._publisher(destination)
        last = self._parts.outbox.last_seq
        if seq < 1 or seq > last:
            raise ValueError(f"seq must be within 1..{last}")
        await publisher.resend_from(seq - 1)  # the cursor is the last seq delivered

    async def quarantine(self) -> list[QuarantinedEvent]:
        """Events parked in quarantine, all destinations."""
        return [
            QuarantinedEvent(
                destination=q.dest,
                seq=q.seq,
                id=q.id,
                type=q.route,
                reason=q.reason,
                quarantined_at=datetime.fromtimestamp(q.time, UTC),
            )
            for q in await self._parts.outbox.quarantined(None)
        ]

    async def release(self, destination: str, seq: int) -> None:
        """Send a quarantined event again."""
        self._publisher(destination)
        if not await self._parts.outbox.release(destination, seq):
            raise ValueError(f"{destination} has no quarantined event {seq}")
        self._parts.state.touch()

    async def decide_label(self, printer: str, job: int, action: str) -> None:
        """Reprint or void a label that was never confirmed (`ValueError`: no such job)."""
        await _decide_label(self._parts.printers, printer, job, action)
        self._parts.state.touch()

    async def drop(self, destination: str, seq: int) -> None:
        """Give up on a quarantined event (it stays in history)."""
        self._publisher(destination)
        if not await self._parts.outbox.drop(destination, seq):
            raise ValueError(f"{destination} has no quarantined event {seq}")
        self._parts.state.touch()


async def _decide_label(
    printers: Sequence[LabelPrinter], printer: str, job: int, action: str
) -> None:
    found = [p for p in printers if p.id == printer]
    if not found:
        raise ValueError(f"no printer {printer!r}")
    await found[0].decide(job, action)


def _printer_status(printer: LabelPrinter) -> PrinterStatus:
    return PrinterStatus(
        id=printer.id,
        connected=printer.driver.connected,
        ready=printer.ready,
        reason=printer.reason,
        queued=printer.queued,
        printed=printer.printed,
        undecided=[UndecidedLabel(j.job, j.kind, j.code, j.reason) for j in printer.undecided()],
    )


def _printer_device(printer: LabelPrinter) -> DeviceStatus:
    """A printer's link among the devices (its jobs are in `printers`)."""
    health = printer.health
    return DeviceStatus(
        id=health.device,
        kind="printer",
        role=printer.config.kind,
        connected=health.connected,
        last_seen=health.last_seen,
        errors=health.errors,
        last_error=health.last_error,
        disconnected_since=health.disconnected_since,
    )


def _scanner_status(health: DeviceHealth, role: StationRole) -> DeviceStatus:
    return DeviceStatus(
        id=health.device,
        kind="scanner",
        role=str(role),
        connected=health.connected,
        last_seen=health.last_seen,
        errors=health.errors,
        last_error=health.last_error,
        disconnected_since=health.disconnected_since,
    )


def _plc_status(plc: PlcPart) -> DeviceStatus:
    health = plc.health
    return DeviceStatus(
        id=health.device,
        kind="plc",
        role=plc.mode,
        connected=health.connected,
        last_seen=health.last_seen,
        errors=health.errors,
        last_error=health.last_error,
        disconnected_since=health.disconnected_since,
        values=_plc_values(plc.last_values),
    )


def _line_batches(tracker: BatchTracker) -> LineBatches:
    """One line's batch state as the page shows it."""
    waiting = tracker.next_work_order
    following = (
        None
        if waiting is None
        else WorkOrderStatus(waiting.work_order, waiting.gtin, waiting.lot, waiting.planned_qty)
    )
    open_ = tracker.open
    batch = None
    if open_ is not None and open_.gtin:
        batch = BatchStatus(
            work_order=open_.work_order,
            gtin=open_.gtin,
            lot=open_.lot,
            started=_parse_time(open_.started),
            materials=len(open_.materials),
            planned_qty=open_.planned_qty,  # the open batch's, not the next order's
            next_work_order=following,
        )
    recent = [
        CompletedBatch(
            trace_code=str(done["trace_code"]),
            lot=str(done["lot"]),
            quantity=done["quantity"],
            completed=_parse_time(str(done["completed"])),
        )
        for done in tracker.recent
    ]
    return LineBatches(tracker.plc_id, batch, following, recent)


def _recent_scan(reading: ScanReading, meaning: Scanned) -> RecentScan:
    """A scan as the page lists it: when and where it was read, and what it meant."""
    data = meaning.data
    if isinstance(meaning, Rejected):
        rejection = meaning.rejection
        return RecentScan(
            time=reading.time,
            device=reading.source,
            type=meaning.type,
            raw=str(data["raw"]),
            reason=rejection.reason,
            reason_code=rejection.code,
            reason_params=dict(rejection.params),
        )
    return RecentScan(
        time=reading.time,
        device=reading.source,
        type=meaning.type,
        raw=str(data["raw"]),
        gtin=_text(data.get("gtin")),
        lot=_text(data.get("lot")),
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _plc_values(values: dict[str, object]) -> dict[str, str]:
    """The PLC's process parameters as last read, for the device list (batch signals left out)."""
    shown: dict[str, str] = {}
    for key, value in values.items():
        if key.startswith("param:"):
            name = key.removeprefix("param:")
        elif key in {"trigger", "ack", "quantity"}:
            continue
        else:
            name = key  # a watch-only PLC: its params are read under their own names
        shown[name] = f"{value:.2f}" if isinstance(value, float) else str(value)
    return shown
