"""Reconciliation of a lot: PLC quantity vs codes stamped vs units scanned out at the dock.

What month-end finds between MES, WMS and ERP, the edge can see the moment it happens, when
this node saw both the batch completing and the shipment leaving. Per lot (GTIN + lot):

- `plc_quantity`: the sum of the PLC's counted quantity over the lot's `batch.completed`;
- `codes_stamped`: distinct trace codes stamped for the lot (one per batch);
- `units_shipped`: units scanned out (`goods.shipped` of the lot or of one of its codes; the
  scan's count, AI 30/37, else 1), each label counted once;
- `units_packed`: distinct units of the lot (its lot, or one of its codes) on SSCCs now, as the
  packing stations' aggregations say (in a trace and a report; the `batch.reconciled` events of
  shipments count what was packed by then).

Discrepancies: more units shipped than the PLC counted, a label scanned out twice, a code
shipped that was never stamped here, two events for one code. Each is an English sentence in
the event and, for the alarm on a page in another language, a code with its params
(`reconcile.over_shipped` `units`/`plc`, `reconcile.scanned_twice` `kind`/`id`/`times`,
`reconcile.never_stamped` `kind`/`id`, `reconcile.duplicate_events` `events`/`codes`; `kind` is
`sscc`, `code` or `label`). `Reconciler` (the runtime task
`reconcile`) follows the outbox and, for every shipment of a lot completed on this node (and
every completion of a lot already shipping), commits a `batch.reconciled` event with the
numbers and raises or clears a `reconcile:GTIN|LOT` alarm on the status page.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from agent.history.aggregation import packed_into, units_packed
from agent.history.reader import History, envelope_json, lookup_each

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from agent.alarms import AlarmBoard
    from agent.events import EventFactory
    from sync.base import Draft, Envelope

log = logging.getLogger(__name__)

RECONCILED = "batch.reconciled"
CURSOR_KEY = "reconcile:seq"
WATCHED = frozenset({"goods.shipped", "batch.completed"})
SHIPPED = frozenset({"goods.shipped"})
READ_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The numbers of one lot and what does not add up."""

    gtin: str | None
    lot: str
    trace_codes: tuple[str, ...]
    batches: int
    codes_stamped: int
    plc_quantity: int | None
    units_shipped: int
    shipments: int
    discrepancies: tuple[str, ...]
    coded: tuple[dict[str, Any], ...] = field(default=(), compare=False)  # {code, params} each
    units_packed: int = 0  # distinct units of the lot on SSCCs (`agent.history.aggregation`)

    @property
    def status(self) -> str:
        """`discrepancy`, `balanced` (all shipped), `open` (stock left) or `unknown` (no count)."""
        if self.discrepancies:
            return "discrepancy"
        if self.plc_quantity is None:
            return "unknown"
        return "balanced" if self.units_shipped == self.plc_quantity else "open"

    def as_data(self) -> dict[str, Any]:
        """The `batch.reconciled` event data (and the report's reconciliation block)."""
        data = {**asdict(self), "status": self.status}
        del data["coded"]
        return data


def _label(data: Mapping[str, Any]) -> tuple[str, str]:
    """What identifies one physical label: SSCC, else GTIN+serial, else the raw read."""
    if data.get("sscc"):
        return "sscc", str(data["sscc"])
    if data.get("serial"):
        return "code", f"{data.get('gtin')}/{data['serial']}"
    return "label", str(data.get("raw"))


class _Found:
    """The discrepancies of one lot: English sentences, and the same as codes and params."""

    def __init__(self) -> None:
        self.sentences: list[str] = []
        self.coded: list[dict[str, Any]] = []

    def add(self, sentence: str, code: str, **params: Any) -> None:
        self.sentences.append(sentence)
        self.coded.append({"code": f"reconcile.{code}", "params": params})


def reconcile(
    completed: Sequence[Mapping[str, Any]],
    shipped: Sequence[Mapping[str, Any]],
    packing: Sequence[Mapping[str, Any]] = (),
) -> Reconciliation:
    """The reconciliation of one lot from its completions, shipments and aggregations."""
    if not completed:
        raise ValueError("a lot is reconciled against at least one batch.completed")
    first = completed[0]["data"]
    gtin, lot = first.get("gtin"), str(first.get("lot"))
    codes = [str(c["data"].get("trace_code")) for c in completed]
    serials = {str(c["data"].get("serial")) for c in completed}
    quantities = [c["data"].get("quantity") for c in completed]
    found = _Found()
    if len(set(codes)) != len(codes):
        found.add(
            f"{len(codes)} batch.completed events for {len(set(codes))} trace code(s)",
            "duplicate_events",
            events=len(codes),
            codes=len(set(codes)),
        )
    plc = None if any(q is None for q in quantities) else sum(int(q) for q in quantities)
    seen: dict[tuple[str, str], int] = {}
    units = 0
    for event in shipped:
        data = event["data"]
        label = _label(data)
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            continue
        count = data.get("quantity")
        units += count if isinstance(count, int) and count > 0 else 1
        if data.get("serial") and data.get("gtin") == gtin and str(data["serial"]) not in serials:
            kind, ident = label
            found.add(
                f"{kind} {ident} shipped but never stamped on this line",
                "never_stamped",
                kind=kind,
                id=ident,
            )
    for (kind, ident), n in seen.items():
        if n > 1:
            found.add(
                f"{kind} {ident} scanned out {n} times",
                "scanned_twice",
                kind=kind,
                id=ident,
                times=n,
            )
    if plc is not None and units > plc:
        found.add(
            f"{units} units shipped but the PLC counted {plc}", "over_shipped", units=units, plc=plc
        )
    return Reconciliation(
        gtin=gtin,
        lot=lot,
        trace_codes=tuple(dict.fromkeys(codes)),
        batches=len(completed),
        codes_stamped=len(set(codes)),
        plc_quantity=plc,
        units_shipped=units,
        shipments=len(seen),
        discrepancies=tuple(found.sentences),
        coded=tuple(found.coded),
        units_packed=units_packed(sorted(packing, key=lambda e: e["seq"]), gtin, lot, serials),
    )


async def lot_events(
    history: History, gtin: str | None, lot: str, *, upto: int | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A lot's `batch.completed` and `goods.shipped` envelopes (by lot and by its codes).

    With `upto`, only events up to that seq: the lot as it stood when that event happened.
    """
    kind, value = ("gtin_lot", f"{gtin}|{lot}") if gtin else ("lot", lot)
    by_lot = [
        envelope_json(e) for e in await history.lookup(kind, value) if upto is None or e.seq <= upto
    ]
    completed = [e for e in by_lot if e["type"] == "batch.completed"]
    shipped = {e["seq"]: e for e in by_lot if e["type"] == "goods.shipped"}
    serials = [
        f"{gtin}|{b['data']['serial']}" for b in completed if gtin and b["data"].get("serial")
    ]
    for envelopes in await lookup_each(history, "serial", serials, routes=SHIPPED):
        for envelope in envelopes:
            if upto is not None and envelope.seq > upto:
                continue
            event = envelope_json(envelope)
            if event["type"] == "goods.shipped":
                shipped[event["seq"]] = event
    return completed, [shipped[s] for s in sorted(shipped)]


class _Upto:
    """A history's events up to one seq, as JSON objects (the lot as it stood then)."""

    def __init__(self, history: History, upto: int) -> None:
        self._history = history
        self._upto = upto

    async def events(self, kind: str, value: str) -> list[dict[str, Any]]:
        found = await self._history.lookup(kind, value)
        return [envelope_json(e) for e in found if e.seq <= self._upto]


class ReconcileStore(History, Protocol):
    """What the reconciler needs from the outbox."""

    @property
    def last_seq(self) -> int:
        """The last committed seq."""
        ...

    def state(self, key: str) -> str | None:
        """Committed application state."""
        ...

    async def wait_beyond(self, seq: int) -> None:
        """Return once an event after `seq` is committed."""
        ...

    async def read(
        self, after: int, *, routes: frozenset[str] | None, limit: int
    ) -> tuple[list[Envelope], int]:
        """Committed envelopes after `after`, and how far the read looked."""
        ...

    async def append(self, draft: Draft) -> Envelope:
        """Commit one event."""
        ...

    async def put_state(self, values: Mapping[str, str]) -> None:
        """Commit application state."""
        ...


class Reconciler:
    """Follows the outbox; reconciles lots as their shipments (or completions) arrive."""

    def __init__(self, store: ReconcileStore, *, factory: EventFactory, alarms: AlarmBoard) -> None:
        self._store = store
        self._factory = factory
        self._alarms = alarms
        self.emitted = 0

    async def run(self) -> None:
        """Follow the outbox for ever from where the last run stopped (or from now)."""
        stored = self._store.state(CURSOR_KEY)
        after = int(stored) if stored is not None else self._store.last_seq
        while True:
            await self._store.wait_beyond(after)
            while after < self._store.last_seq:
                envelopes, scanned = await self._store.read(after, routes=WATCHED, limit=READ_LIMIT)
                carried = False
                for envelope in envelopes:
                    carried = await self.examine(envelope) or carried
                if envelopes and not carried:
                    await self._store.put_state({CURSOR_KEY: str(scanned)})
                after = scanned

    async def examine(self, envelope: Envelope) -> bool:
        """Reconcile the lot of a shipment or completion; True if an event was committed."""
        event = envelope_json(envelope)
        data = event["data"]
        gtin, lot = data.get("gtin"), data.get("lot")
        if event["type"] == "goods.shipped" and gtin and data.get("serial"):
            for batch in await self._store.lookup("serial", f"{gtin}|{data['serial']}"):
                found = envelope_json(batch)
                if found["type"] == "batch.completed":
                    lot = found["data"].get("lot")
                    break
        if not lot:
            return False
        # the lot as it stood at this event: a completion and its shipment read in one batch
        # reconcile once (at the shipment), and a replay after a restart gives the same answer
        completed, shipped = await lot_events(self._store, gtin, str(lot), upto=envelope.seq)
        if not completed or not shipped:
            return False  # this node did not see both ends
        _, packing = await packed_into(_Upto(self._store, envelope.seq), gtin, None, str(lot))
        result = reconcile(completed, shipped, packing)
        keys = [("lot", result.lot), *(("trace_code", c) for c in result.trace_codes)]
        if result.gtin:
            keys.append(("gtin_lot", f"{result.gtin}|{result.lot}"))
        await self._store.append(
            self._factory.draft(
                RECONCILED,
                "agent",
                result.as_data(),
                keys=keys,
                state={CURSOR_KEY: str(envelope.seq)},
            )
        )
        self.emitted += 1
        alarm = f"reconcile:{result.gtin}|{result.lot}"
        if result.discrepancies:
            message = f"lot {result.lot}: " + "; ".join(result.discrepancies)
            self._alarms.raise_(
                alarm,
                "reconcile",
                message,
                code="reconcile.discrepancy",
                params={"lot": result.lot, "discrepancies": list(result.coded)},
                quotes_input=True,  # labels as scanned
            )
            # the labels are barcode contents: named at debug level only
            log.warning(
                "reconciliation of lot %s: %d discrepancy(ies)", result.lot, len(result.coded)
            )
            log.debug("reconciliation of lot %s: %s", result.lot, message)
        else:
            self._alarms.clear(alarm)
        return True
