"""Batch tracking for one line: the open batch, its materials, and exactly one code per batch.

A batch opens (`batch.started`) when the agent starts without one, after each completion, and
when a work order arrives for an empty batch. Line scans attach their lots to the open batch.
At the PLC's signal the batch completes: the next serial of its GTIN is allocated, the trace
code composed and verified, and `batch.completed` and the next `batch.started` are committed
in ONE transaction together with the serial counter and the handshake state, so that a crash at
any instant leaves either everything or nothing. Only then is the code written to the PLC and
the handshake acknowledged.

How the PLC signals completion (handshake, counter or rising edge) is `agent.batches.triggers`:
the tracker hands its trigger the stamping step, which the trigger calls with the state it
records alongside the batch.

When the outbox refuses the batch (backlog or disk limit), nothing is stamped: an alarm is
raised and the trigger records nothing, so the same signal completes the batch on a later poll
once there is room.
Batches of several PLCs with the same GTIN share one serial counter; `serial_lock` (one per
outbox) keeps their allocations apart. Serials are `agent.batches.serials`' (sequential/random).

A batch belongs to the plant-local day it OPENED: its number of the day and its lot are fixed
then, whatever is scanned into it or however late it completes. The `day` state names the day
and number of the last batch opened and is written only when a batch opens, so the first batch
opened after midnight is number 1. (The trace code's production date, AI 11, is the day the
batch completed.)

Fault point (`sync.faults`, for the fault-injection tests): `batch.after_commit` (the batch
is committed, the PLC not yet told); `batch.before_ack` is the trigger's.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from agent.batches.serials import SerialStore, next_serial
from agent.batches.tracecode import TraceCodeError, compose
from agent.batches.triggers import BatchTrigger
from agent.batches.work_orders import WorkOrder
from agent.events import format_time
from sync.base import OutboxFull
from sync.faults import fault_point

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from agent.alarms import AlarmBoard
    from agent.batches.shifts import ShiftCalendar
    from agent.batches.triggers import PlcLink
    from agent.config.line import LineSection
    from agent.config.plcs import AnyPlcConfig
    from agent.events import EventFactory
    from agent.scanning.interpret import Material
    from sync.base import Draft, Envelope

log = logging.getLogger(__name__)


class BatchStore(SerialStore, Protocol):
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
    planned_qty: int | None = None  # of the work order it was opened under


class BatchTracker:
    """The batch state machine of one PLC's line."""

    def __init__(
        self,
        plc: AnyPlcConfig,
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
    def watch(self) -> dict[str, Any]:
        """The PLC values one poll reads: trigger, ack, quantity and the process parameters."""
        return self.trigger.watch

    @property
    def mode(self) -> str:
        """`handshake`, `counter` or `edge`."""
        return self.trigger.mode

    # --- state ------------------------------------------------------------------------------

    def _local(self, moment: datetime) -> datetime:
        return moment.astimezone(self._zone) if self._zone else moment.astimezone()

    def _local_now(self) -> datetime:
        return self._local(self._clock())

    def _opened_on(self, batch: OpenBatch) -> str:
        """The plant-local date (YYYYMMDD) `batch` opened on."""
        started = datetime.fromisoformat(batch.started)
        return f"{self._local(started):%Y%m%d}"

    def _state(self, name: str) -> str | None:
        return self._store.state(f"{self._key}:{name}")

    async def restore(self) -> None:
        """Load the open batch and work order from the outbox; open a batch if none is."""
        raw_open = self._state("open")
        raw_wo = self._state("work_order")
        if raw_wo:
            self.work_order = WorkOrder(**json.loads(raw_wo))
        if raw_open:
            fields = json.loads(raw_open)
            self.open = OpenBatch(**fields)
            if "planned_qty" not in fields and self._opened_under(self.work_order):
                # committed before batches kept their planned quantity: it is the order's
                self.open.planned_qty = self.work_order.planned_qty
        self.operator = self._state("operator")
        self.trigger.restore()
        if self.open is None:
            async with self._lock:
                batch = self._next_open()
                await self._store.append(self._start_draft(batch, {}))
                self.open = batch

    def _next_open(self, number: int | None = None) -> OpenBatch:
        """A new batch: the next of the day, or batch `number` again (re-opened)."""
        now = self._clock()
        today = self._local(now)
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
            started=format_time(now),
            shift=self._shift_now(),
            operator=self.operator,
            planned_qty=wo.planned_qty,
        )

    def _opened_under(self, order: WorkOrder) -> bool:
        """Whether the open batch runs `order` (its number, product and lot)."""
        batch = self.open
        return batch is not None and (
            (batch.work_order, batch.gtin) == (order.work_order, order.gtin)
            and order.lot in (None, batch.lot)
        )

    @property
    def next_work_order(self) -> WorkOrder | None:
        """The work order waiting for the next batch (set while the open one had materials)."""
        order = self.work_order
        if self.open is None:
            return None
        if self._opened_under(order) and order.planned_qty == self.open.planned_qty:
            return None
        return order

    def _open_state(self, batch: OpenBatch) -> dict[str, str]:
        """The open batch as committed state (its materials, operator, ...)."""
        return {f"{self._key}:open": json.dumps(asdict(batch), separators=(",", ":"))}

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
            state={
                **self._open_state(batch),
                # the day a batch opened, and its number: only ever written when one opens
                f"{self._key}:day": f"{self._opened_on(batch)}:{batch.number}",
                **extra_state,
            },
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
                # the same batch number under the new order, unless it opened before midnight:
                # then it is re-opened as the next batch of the new day
                same_day = self._opened_on(self.open) == f"{self._local_now():%Y%m%d}"
                reopened = self._next_open(self.open.number if same_day else None)
                await self._store.append(self._start_draft(reopened, wo_state))
                self.open = reopened
            else:
                await self._store.put_state(wo_state)
        # the work order may have come from a barcode: its text only at DEBUG
        log.info("%s: work order set (gtin %s)", self.plc_id, order.gtin)
        log.debug("%s: work order %s, lot %s", self.plc_id, order.work_order, order.lot)

    async def scan_work_order(self, work_order: str) -> None:
        """A work-order barcode scanned at the line: that work order, the line's product."""
        await self.set_work_order(WorkOrder(work_order, self.work_order.gtin or self.line.gtin))

    async def consume(self, material: Material, source: str) -> Envelope:
        """Commit a material scanned at this line into the open batch: `material.consumed`.

        Its data is the scan's plus `batch`, the open batch's lot (null when none is open);
        the batch's materials are committed with it.
        """
        if material.line != self.plc_id:  # the station's wiring is wrong: never another line's
            raise ValueError(f"material for line {material.line!r} handed to {self.plc_id!r}")
        async with self._lock:
            batch = self.open
            if batch is None:
                data = {**material.data, "batch": None}
                return await self._store.append(
                    self._factory.draft(material.type, source, data, keys=material.keys)
                )
            data = {**material.data, "batch": batch.lot}
            record: dict[str, Any] = {
                k: data[k] for k in ("gtin", "lot", "serial", "sscc", "raw") if k in data
            }
            updated = replace(batch, materials=[*batch.materials, record])
            draft = self._factory.draft(
                material.type,
                source,
                data,
                keys=(*material.keys, ("batch", batch.lot)),  # findable by the batch it went into
                state=self._open_state(updated),
            )
            envelope = await self._store.append(draft)
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
                    code="batch.no_product",
                    params={"plc": self.plc_id},
                )
                return None
            serial, serial_state = await next_serial(self._store, gtin, self.line)
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
                self._alarms.raise_(
                    f"trace-code:{self.plc_id}",
                    "batch",
                    str(exc),
                    code="batch.trace_code",
                    params={"plc": self.plc_id, "detail": str(exc)},
                    quotes_input=True,  # the code quotes the lot, which may be a scanned order's
                )
                # one line (a config problem); the code quotes the lot, which may be scanned
                log.error("%s: no valid trace code: the trace-code alarm says why", self.plc_id)  # noqa: TRY400
                log.debug("%s: %s", self.plc_id, exc)
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
                    **serial_state,
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
                    code="batch.refused",
                    params={"plc": self.plc_id, "detail": str(exc)},
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
