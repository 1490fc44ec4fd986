"""Batch tracking for one line: the open batch, its materials, and exactly one code per batch.

A batch opens (`batch.started`) when the agent starts without one, after each completion, and
when a work order arrives for an empty batch. Line scans attach their lots to the open batch.
At the PLC's signal the batch completes: the next serial of its GTIN is allocated, the trace
code composed and verified, and `batch.completed` and the next `batch.started` are committed
in ONE transaction together with the serial counter and the handshake state, so that a crash at
any instant leaves either everything or nothing. Only then is the code written to the PLC and
the handshake acknowledged.

How the PLC signals completion (handshake, counter or rising edge) is `agent.batch_triggers`:
the tracker hands its trigger the stamping step, which the trigger calls with the state it
records alongside the batch.

When the outbox refuses the batch (backlog or disk limit), nothing is stamped: an alarm is
raised and the trigger records nothing, so the same signal completes the batch on a later poll
once there is room.
Batches of several PLCs with the same GTIN share one serial counter; `serial_lock` (one per
outbox) keeps their allocations apart.

Fault point (`sync.faults`, for the fault-injection tests): `batch.after_commit` (the batch
is committed, the PLC not yet told); `batch.before_ack` is the trigger's.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from agent.batch_triggers import BatchTrigger
from agent.events import format_time
from agent.tracecode import TraceCodeError, compose
from sync.base import OutboxFull
from sync.faults import fault_point

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from datetime import datetime

    from agent.alarms import AlarmBoard
    from agent.batch_triggers import PlcLink
    from agent.config import LineSection, PlcRtuConfig, PlcTcpConfig
    from agent.events import EventFactory
    from agent.shifts import ShiftCalendar
    from drivers.registers import RegisterAddress
    from sync.base import Draft, Envelope

log = logging.getLogger(__name__)


class BatchStore(Protocol):
    """What batch tracking needs from the outbox."""

    def state(self, key: str) -> str | None:
        """Committed application state."""
        ...

    async def append(self, draft: Draft) -> Envelope:
        """Commit one event."""
        ...

    async def append_many(self, drafts: Sequence[Draft]) -> list[Envelope]:
        """Commit several events in one transaction."""
        ...

    async def put_state(self, values: Mapping[str, str]) -> None:
        """Commit application state without an event."""
        ...


@dataclass(frozen=True, slots=True)
class WorkOrder:
    """What the MES (or a scan, or the status page) says the line is making."""

    work_order: str | None
    gtin: str | None
    lot: str | None = None
    planned_qty: int | None = None


@dataclass(slots=True)
class OpenBatch:
    """The batch being produced."""

    number: int
    work_order: str | None
    gtin: str | None
    lot: str
    started: str
    materials: list[dict[str, Any]] = field(default_factory=list)
    shift: str | None = None
    operator: str | None = None


class BatchTracker:
    """The batch state machine of one PLC's line."""

    def __init__(
        self,
        plc: PlcTcpConfig | PlcRtuConfig,
        line: LineSection,
        *,
        factory: EventFactory,
        store: BatchStore,
        alarms: AlarmBoard,
        timezone: str | None,
        clock: Callable[[], datetime] | None = None,
        shifts: ShiftCalendar | None = None,
        serial_lock: asyncio.Lock | None = None,
    ) -> None:
        assert plc.batch is not None
        self.plc_id = plc.id
        self.line = line
        self._factory = factory
        self._store = store
        self._alarms = alarms
        self._zone = ZoneInfo(timezone) if timezone else None
        self._clock = clock or factory.clock
        self._lock = asyncio.Lock()
        self._serial_lock = serial_lock or asyncio.Lock()
        self._key = f"batch:{plc.id}"
        self.work_order = WorkOrder(None, line.gtin)
        self.open: OpenBatch | None = None
        self._shifts = shifts
        self.operator: str | None = None  # the last badge scanned at the line
        self.recent: list[dict[str, Any]] = []
        self.completed = 0
        self.trigger = BatchTrigger(
            plc.id, plc.batch, plc.params, store=store, alarms=alarms, complete=self._complete
        )

    # --- what the PLC driver must read on every poll ---------------------------------------

    @property
    def watch(self) -> dict[str, RegisterAddress]:
        """The PLC values one poll reads: trigger, ack, quantity and the process parameters."""
        return self.trigger.watch

    @property
    def mode(self) -> str:
        """`handshake`, `counter` or `edge`."""
        return self.trigger.mode

    # --- state ------------------------------------------------------------------------------

    def _local_now(self) -> datetime:
        now = self._clock()
        return now.astimezone(self._zone) if self._zone else now.astimezone()

    def _state(self, name: str) -> str | None:
        return self._store.state(f"{self._key}:{name}")

    async def restore(self) -> None:
        """Load the open batch and work order from the outbox; open a batch if none is."""
        raw_open = self._state("open")
        if raw_open:
            self.open = OpenBatch(**json.loads(raw_open))
        raw_wo = self._state("work_order")
        if raw_wo:
            self.work_order = WorkOrder(**json.loads(raw_wo))
        self.operator = self._state("operator")
        self.trigger.restore()
        if self.open is None:
            async with self._lock:
                batch = self._next_open()
                await self._store.append(self._start_draft(batch, {}))
                self.open = batch

    def _next_open(self, number: int | None = None) -> OpenBatch:
        """A new batch: the next of the day, or batch `number` again (re-opened)."""
        today = self._local_now()
        day_key = today.strftime("%Y%m%d")
        last = self._state("day") or ""
        if number is None:
            number = int(last.split(":")[1]) + 1 if last.startswith(day_key + ":") else 1
        wo = self.work_order
        lot = wo.lot or self.line.lot_template.format(
            node=self._factory.node,
            site=self._factory.site,
            date=today,
            batch=number,
            work_order=wo.work_order or "",
        )
        return OpenBatch(
            number=number,
            work_order=wo.work_order,
            gtin=wo.gtin,
            lot=lot,
            started=format_time(self._clock()),
            shift=self._shift_now(),
            operator=self.operator,
        )

    def _open_state(self, batch: OpenBatch) -> dict[str, str]:
        day = self._local_now().strftime("%Y%m%d")
        return {
            f"{self._key}:open": json.dumps(asdict(batch), separators=(",", ":")),
            f"{self._key}:day": f"{day}:{batch.number}",
        }

    def _start_draft(self, batch: OpenBatch, extra_state: dict[str, str]) -> Draft:
        data = {"work_order": batch.work_order, "gtin": batch.gtin, "lot": batch.lot}
        data |= {"shift": batch.shift, "operator": batch.operator}
        keys = [("lot", batch.lot)]
        if batch.work_order:
            keys.append(("work_order", batch.work_order))
        return self._factory.draft(
            "batch.started",
            f"plc:{self.plc_id}",
            data,
            keys=keys,
            state={**self._open_state(batch), **extra_state},
        )

    # --- shifts and operators (the trace issue) -------------------------------------------

    def _shift_now(self) -> str | None:
        return self._shifts.at(self._clock()) if self._shifts is not None else None

    async def scan_operator(self, badge: str) -> None:
        """An operator badge scanned at the line: they run the open batch and the next ones."""
        async with self._lock:
            self.operator = badge
            state = {f"{self._key}:operator": badge}
            if self.open is not None:
                updated = replace(self.open, operator=badge)
                state |= self._open_state(updated)
                self.open = updated
            await self._store.put_state(state)
        log.info("%s: operator badge scanned", self.plc_id)

    # --- work orders and materials -------------------------------------------------------

    async def set_work_order(self, order: WorkOrder) -> None:
        """Make `order` the running work order; re-open an empty batch under it."""
        async with self._lock:
            self.work_order = order
            wo_state = {f"{self._key}:work_order": json.dumps(asdict(order))}
            if self.open is not None and not self.open.materials:
                reopened = self._next_open(self.open.number)
                await self._store.append(self._start_draft(reopened, wo_state))
                self.open = reopened
            else:
                await self._store.put_state(wo_state)
        log.info("work order %s (gtin %s) set", order.work_order, order.gtin)

    async def scan_work_order(self, work_order: str) -> None:
        """A work-order barcode scanned at the line: that work order, the line's product."""
        await self.set_work_order(WorkOrder(work_order, self.work_order.gtin or self.line.gtin))

    async def consume(
        self, data: dict[str, object], draft: Callable[[dict[str, str]], Draft]
    ) -> Envelope:
        """Commit a material.consumed scan into the open batch (`data["batch"]` is set here)."""
        async with self._lock:
            batch = self.open
            data["batch"] = batch.lot if batch is not None else None
            if batch is None:
                return await self._store.append(draft({}))
            material: dict[str, Any] = {
                k: data[k] for k in ("gtin", "lot", "serial", "sscc", "raw") if k in data
            }
            updated = replace(batch, materials=[*batch.materials, material])
            envelope = await self._store.append(draft(self._open_state(updated)))
            self.open = updated
            return envelope

    # --- the PLC signal ------------------------------------------------------------------

    async def on_poll(self, values: Mapping[str, Any], plc: PlcLink, *, fresh_link: bool) -> None:
        """React to one complete poll of the PLC (its trigger decides whether a batch is done)."""
        await self.trigger.on_poll(values, plc, fresh_link=fresh_link)

    async def _complete(
        self, values: Mapping[str, Any], extra_state: dict[str, str]
    ) -> Envelope | None:
        """Stamp the open batch; returns the batch.completed envelope, or None if it cannot be."""
        async with self._lock, self._serial_lock:
            batch = self.open or self._next_open()
            gtin = batch.gtin or self.work_order.gtin
            if gtin is None:
                self._alarms.raise_(
                    f"no-product:{self.plc_id}",
                    "batch",
                    f"{self.plc_id}: batch complete but no product (GTIN): set a work order",
                )
                return None
            serial_key = f"serial:{gtin}"
            serial_no = int(self._store.state(serial_key) or "0") + 1
            serial = str(serial_no).zfill(self.line.serial_width)
            now = self._clock()
            try:
                code = compose(
                    self.line.trace_template,
                    gtin=gtin,
                    lot=batch.lot,
                    serial=serial,
                    day=self._local_now().date(),
                    node=self._factory.node,
                    site=self._factory.site,
                )
            except TraceCodeError as exc:
                self._alarms.raise_(f"trace-code:{self.plc_id}", "batch", str(exc))
                log.error("%s: %s", self.plc_id, exc)  # noqa: TRY400 (a config problem: one line)
                return None
            self._alarms.clear(f"no-product:{self.plc_id}")
            self._alarms.clear(f"trace-code:{self.plc_id}")
            quantity = values.get("quantity")
            data = {
                "trace_code": code.hri,
                "digital_link": code.digital_link,
                "work_order": batch.work_order,
                "gtin": gtin,
                "lot": batch.lot,
                "serial": serial,
                "quantity": int(quantity) if quantity is not None else None,
                "params": {
                    k.removeprefix("param:"): v for k, v in values.items() if k.startswith("param:")
                },
                "materials": batch.materials,
                "started": batch.started,
                "completed": format_time(now),
                "shift": self._shift_now() if self._shifts is not None else batch.shift,
                "operator": batch.operator,
            }
            keys = [
                ("trace_code", code.hri),
                ("lot", batch.lot),
                ("gtin_lot", f"{gtin}|{batch.lot}"),
                ("serial", f"{gtin}|{serial}"),
            ]
            if batch.work_order:
                keys.append(("work_order", batch.work_order))
            completed = self._factory.draft(
                "batch.completed",
                f"plc:{self.plc_id}",
                data,
                keys=keys,
                state={
                    serial_key: str(serial_no),
                    f"{self._key}:last_code": code.hri,
                    **extra_state,
                },
            )
            following = self._next_open()
            try:
                envelopes = await self._store.append_many(
                    [completed, self._start_draft(following, {})]
                )
            except OutboxFull as exc:
                self._alarms.raise_(
                    f"batch-refused:{self.plc_id}",
                    "backlog",
                    f"{self.plc_id}: batch complete but not stamped, outbox full: {exc}",
                )
                log.error("%s: batch %s not stamped: %s", self.plc_id, batch.lot, exc)  # noqa: TRY400 (expected)
                return None
            self._alarms.clear(f"batch-refused:{self.plc_id}")
            fault_point("batch.after_commit")
            self.open = following
            self.completed += 1
            self.recent.insert(
                0, {k: data[k] for k in ("trace_code", "lot", "quantity", "completed")}
            )
            del self.recent[10:]
            log.info("%s: batch %s completed, code %s", self.plc_id, batch.lot, code.hri)
            return envelopes[0]
