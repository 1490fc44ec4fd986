"""What the status page shows and may do: the `StatusView` protocol the runtime implements.

The runtime hands the web app one object with this shape. Reads are cheap snapshots
(`status()`), the change counter (`wait_changed`) drives live updates, and the control actions
are only called after login, CSRF and Origin checks. Actions raise `ValueError` with a message
a technician can act on when the input is wrong (the API answers 400 with it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime  # noqa: TC003  # pydantic resolves the annotations at runtime
from typing import Any, Literal, Protocol

from agent.alarms import Alarm  # noqa: TC001  # pydantic resolves the annotations at runtime


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """The agent itself."""

    site: str
    node: str
    version: str
    started: datetime
    uptime_s: float
    clock_synced: bool | None = None  # None: unknown (no timedatectl/chrony to ask)


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """One scanner, PLC or label printer link as its driver sees it."""

    id: str
    kind: Literal["scanner", "plc", "printer"]
    role: str
    connected: bool
    last_seen: datetime | None = None
    errors: int = 0
    last_error: str | None = None
    disconnected_since: datetime | None = None
    values: dict[str, str] = field(default_factory=dict)  # a PLC's parameters, as last read


@dataclass(frozen=True, slots=True)
class DestinationStatus:
    """One destination's delivery state."""

    name: str
    kind: str
    connected: bool
    delivered: int = 0
    backlog: int = 0
    backlog_bytes: int = 0
    oldest_undelivered_age_s: float | None = None
    quarantined: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class WorkOrderStatus:
    """A work order as the page shows it (the next one, waiting for the running batch)."""

    work_order: str | None
    gtin: str | None
    lot: str | None = None
    planned_qty: int | None = None


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """The batch that is running now: its own work order and planned quantity.

    `next_work_order` is a work order that arrived while this batch already had materials: it
    applies from the next batch (None when there is none waiting).
    """

    work_order: str | None
    gtin: str
    lot: str
    started: datetime
    materials: int = 0
    planned_qty: int | None = None
    next_work_order: WorkOrderStatus | None = None


@dataclass(frozen=True, slots=True)
class CompletedBatch:
    """A recently completed batch and the trace code stamped on it."""

    trace_code: str
    lot: str
    quantity: int | None
    completed: datetime


@dataclass(frozen=True, slots=True)
class LineBatches:
    """One line of this node: its open batch, the work order waiting, its last batches.

    `next_work_order` is the line's work order waiting for the next batch (also in `batch`,
    where the page has always looked for it; here it shows while no batch is open too).
    """

    line: str
    batch: BatchStatus | None = None
    next_work_order: WorkOrderStatus | None = None
    recent_batches: list[CompletedBatch] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RecentScan:
    """A recent scan as the page lists it; `reason` is set when it was rejected.

    `reason_code` and `reason_params` say the same as `reason` for a page to word in its own
    language (codes listed in `agent.scanning.rejections`; None for a rejection without a code).
    """

    time: datetime
    device: str
    type: str
    raw: str
    gtin: str | None = None
    lot: str | None = None
    reason: str | None = None
    reason_code: str | None = None
    reason_params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UndecidedLabel:
    """A print job sent but never confirmed: a person decides, Reprint or Void."""

    job: int
    kind: str  # batch | sscc
    code: str  # the trace code or the SSCC
    reason: str | None


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """One label printer: whether it can print, its queue, its undecided jobs."""

    id: str
    connected: bool
    ready: bool | None  # None: not asked yet
    reason: str | None = None  # why it cannot print
    queued: int = 0
    printed: int = 0
    undecided: list[UndecidedLabel] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Health:
    """What `/healthz` answers: ok, or the reasons it is not."""

    ok: bool
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """Everything the page shows, as one snapshot."""

    agent: AgentInfo
    health: Health
    devices: list[DeviceStatus] = field(default_factory=list)
    destinations: list[DestinationStatus] = field(default_factory=list)
    batch: BatchStatus | None = None  # the first line's (as before several lines): `batches`
    recent_batches: list[CompletedBatch] = field(default_factory=list)  # of every line
    recent_scans: list[RecentScan] = field(default_factory=list)
    alarms: list[Alarm] = field(default_factory=list)
    batches: list[LineBatches] = field(default_factory=list)  # one entry per line
    printers: list[PrinterStatus] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class QuarantinedEvent:
    """An event a destination rejected for good, parked until released or dropped."""

    destination: str
    seq: int
    id: str
    type: str
    reason: str
    quarantined_at: datetime


class StatusView(Protocol):
    """The runtime as the status page sees it."""

    def status(self) -> AgentStatus:
        """Return a snapshot of the agent's state (cheap: called per request and update)."""
        ...

    async def wait_changed(self, seen: int) -> int:
        """Return the change counter as soon as it differs from `seen` (at once if it does).

        Callers start with `seen=-1`; the counter only grows. Cancelling the wait is harmless.
        """
        ...

    async def events(self, *, limit: int, type: str | None) -> list[dict[str, Any]]:  # noqa: A002
        """Return the most recent envelopes, newest first, optionally of one type only."""
        ...

    async def trace(self, code: str) -> dict[str, Any] | None:
        """Return the trace chain of a code, None if unknown here."""
        ...

    async def set_work_order(
        self,
        work_order: str | None,
        gtin: str | None,
        lot: str | None,
        planned_qty: int | None,
        line: str | None = None,
    ) -> None:
        """Start (or with all None, clear) the work order of `line` (None: the only line)."""
        ...

    async def acknowledge_alarm(self, alarm_id: str) -> None:
        """Mark an active alarm as seen."""
        ...

    async def resend_from(self, destination: str, seq: int) -> None:
        """Move a destination's cursor back so it is sent everything from `seq` again."""
        ...

    async def quarantine(self) -> list[QuarantinedEvent]:
        """Return the events parked in quarantine, all destinations."""
        ...

    async def release(self, destination: str, seq: int) -> None:
        """Send a quarantined event to its destination again."""
        ...

    async def drop(self, destination: str, seq: int) -> None:
        """Give up on a quarantined event for that destination (it stays in history)."""
        ...

    async def decide_label(self, printer: str, job: int, action: str) -> None:
        """Reprint or void a label whose printing was never confirmed."""
        ...
