"""Trace queries: from any code the plant has in hand to the whole chain this node saw.

Input: a trace code, any GS1 element string (with or without parentheses), a GS1 Digital Link URI,
an SSCC, a lot or a work order. The text is read the way a scanner read is
(`agent.scanning.interpret`) and looked up by its most specific key first (trace code, GTIN+serial,
SSCC, GTIN+lot, then lot, work order); the first key with history wins.

From what matched, the batches are found: a batch's own events, the batch a shipped code or
pallet (SSCC with content GTIN+lot) came from, or the batches a material lot was consumed into.
For each batch, backward: work order, line, shift/operator, parameters, times, the consumed
material lots and where and when each was received (if scanned here); forward: the shipments
of its codes and lot, the SSCCs its items are packed into (`packed_into`), and the lot's
reconciliation. An SSCC's trace lists its children with their batches (`pallets`) and the
batches of every item on it (`agent.history.aggregation`). `lineside trace` prints the dict
(`agent.cli.history_commands`: a table for people, `--json` for machines); the status page
serves it over HTTP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.config.scanners import StationRole
from agent.history import aggregation
from agent.history.reader import History, HistoryReader, envelope_json
from agent.history.reconcile import lot_events, reconcile
from agent.scanning.interpret import Receipt, StationRules, interpret

if TYPE_CHECKING:
    from pathlib import Path

# most specific first: the first kind with history answers the query
_PRIORITY = ("trace_code", "serial", "sscc", "gtin_lot", "lot", "work_order")
_SCANS = ("goods.received", "goods.shipped", "material.consumed")
_QUERY = StationRules(StationRole.INBOUND, max_length=4096)  # a query is read as a scan is


def identify(query: str) -> list[tuple[str, str]]:
    """The lookup keys a query text stands for, most specific first."""
    text = query.strip()
    if not text:
        return []
    keys: list[tuple[str, str]] = [("trace_code", text)]
    result = interpret(text.encode(), _QUERY)
    if isinstance(result, Receipt):
        keys += [k for k in result.keys if k[0] != "gtin"]
    if len(keys) == 1:  # not GS1: a lot, a work order or an SSCC as typed
        keys += [("lot", text), ("work_order", text), ("sscc", text)]
    rank = {kind: i for i, kind in enumerate(_PRIORITY)}
    return sorted(dict.fromkeys(keys), key=lambda k: rank.get(k[0], len(rank)))


async def trace(history: History, query: str) -> dict[str, Any] | None:
    """The trace of `query`, or None when this node has no history of it."""
    for kind, value in identify(query):
        seeds = [envelope_json(e) for e in await history.lookup(kind, value)]
        if seeds:
            break
    else:
        return None
    tracer = Tracer(history)
    batches = await tracer.batches_of(seeds)
    pallets = [await tracer.pallet_view(value)] if kind == "sscc" else []
    return {
        "query": query,
        "matched": {"kind": kind, "value": value},
        "batches": [await tracer.batch_view(b) for b in batches],
        "pallets": [p for p in pallets if p["children"]],
        "events": seeds,
        "truncated": bool(getattr(history, "truncated", False)),
    }


class Tracer:
    """One trace's lookups (cached: a lot shows up from several sides)."""

    def __init__(self, history: History) -> None:
        self._history = history
        self._cache: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._outcomes: dict[tuple[str, str], tuple[dict[int, dict[str, Any]], set[str]]] = {}
        self.chain: dict[int, dict[str, Any]] = {}
        """Every event the batch views show, by seq (what a report lists)."""

    async def events(self, kind: str, value: str) -> list[dict[str, Any]]:
        """The events under one key, as JSON objects."""
        key = (kind, value)
        if key not in self._cache:
            self._cache[key] = [envelope_json(e) for e in await self._history.lookup(kind, value)]
        return self._cache[key]

    async def _typed(self, type_: str, kind: str, value: str) -> list[dict[str, Any]]:
        return [e for e in await self.events(kind, value) if e["type"] == type_]

    async def _lot_key_events(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Events of the lot `data` names (GTIN+lot when it has a GTIN)."""
        lot, gtin = data.get("lot"), data.get("gtin")
        if not lot:
            return []
        return await self.events(*(("gtin_lot", f"{gtin}|{lot}") if gtin else ("lot", lot)))

    async def _lot_outcome(
        self, data: dict[str, Any]
    ) -> tuple[dict[int, dict[str, Any]], set[str]]:
        """The lot `data` names: its batches made (by seq), the batches it was consumed into.

        Worked out once per lot: a lot shipped in 10,000 scans is read once, not 10,000 times.
        """
        lot, gtin = data.get("lot"), data.get("gtin")
        key = (str(gtin), str(lot))
        if key not in self._outcomes:
            events = await self._lot_key_events(data)
            made = {e["seq"]: e for e in events if e["type"] == "batch.completed"}
            into = {
                str(e["data"]["batch"])
                for e in events
                if e["type"] == "material.consumed" and e["data"].get("batch")
            }
            self._outcomes[key] = (made, into)
        return self._outcomes[key]

    async def batches_of(self, seeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The batch events (`batch.completed`, or `batch.started` of open ones) seeds lead to."""
        found: dict[int, dict[str, Any]] = {}
        open_lots: dict[str, dict[str, Any]] = {}
        for seed in seeds:
            data = seed["data"]
            match seed["type"]:
                case "batch.completed":
                    found[seed["seq"]] = seed
                case t if t in aggregation.TYPES:  # a pallet: the batches of its items
                    found |= await self._pallet_batches(str(data.get("sscc")))
                case "batch.started" | "batch.reconciled":
                    completed = await self._typed("batch.completed", "lot", str(data.get("lot")))
                    found |= {e["seq"]: e for e in completed}
                    if seed["type"] == "batch.started" and not completed:
                        open_lots[str(data.get("lot"))] = seed
                case t if t in _SCANS:
                    # our product: the batch of a shipped code, or of a pallet's content lot
                    made, consumed_into = await self._lot_outcome(data)
                    found |= made
                    serial = data.get("serial")
                    # by serial only when the lot did not already give this code's batch: a
                    # lot shipped unit by unit is one lot look-up, not one look-up per unit
                    if (
                        data.get("gtin")
                        and serial
                        and all(e["data"].get("serial") != serial for e in made.values())
                    ):
                        serial_key = f"{data['gtin']}|{serial}"
                        hits = await self._typed("batch.completed", "serial", serial_key)
                        found |= {e["seq"]: e for e in hits}
                    # a material: the batches it was consumed into
                    into = {str(data["batch"])} if data.get("batch") else set()
                    into |= consumed_into
                    for lot in sorted(into):
                        completed = await self._typed("batch.completed", "lot", lot)
                        found |= {e["seq"]: e for e in completed if e["data"].get("lot") == lot}
                        if not completed:
                            started = await self._typed("batch.started", "lot", lot)
                            open_lots |= {lot: started[-1]} if started else {}
        done = {str(e["data"].get("lot")) for e in found.values()}
        opened = [e for lot, e in open_lots.items() if lot not in done]
        return [found[s] for s in sorted(found)] + opened

    async def _pallet_batches(self, sscc: str) -> dict[int, dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        for item in await aggregation.items(self, sscc):
            found |= {e["seq"]: e for e in await self._batches_of_item(item)}
        return found

    async def _batches_of_item(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        """The batch an item (GTIN + serial, maybe lot) came from: its code's, else its lot's."""
        hits = await self._typed("batch.completed", "serial", f"{item['gtin']}|{item['serial']}")
        if not hits and item.get("lot"):
            lot = await self._lot_key_events(item)
            hits = [e for e in lot if e["type"] == "batch.completed"]
        return hits

    async def pallet_view(self, sscc: str) -> dict[str, Any]:
        """An SSCC's children, each item with the batch (trace code, lot) it came from."""
        children = []
        for child in await aggregation.contents(self, sscc):
            view = dict(child)
            if child.get("kind") != "sscc":
                batches = await self._batches_of_item(child)
                view["batches"] = [
                    {"trace_code": b["data"].get("trace_code"), "lot": b["data"].get("lot")}
                    for b in batches
                ]
            children.append(view)
        events = [e for e in await self.events("sscc", sscc) if e["type"] in aggregation.TYPES]
        self.chain |= {e["seq"]: e for e in events}
        return {"sscc": sscc, "children": children, "count": len(children)}

    async def batch_view(self, event: dict[str, Any]) -> dict[str, Any]:
        """One batch, backward (materials and their receipt) and forward (shipments)."""
        data = event["data"]
        lot = str(data.get("lot"))
        self.chain[event["seq"]] = event
        view: dict[str, Any] = {
            "status": "completed" if event["type"] == "batch.completed" else "open",
            **{k: v for k, v in data.items() if k != "materials"},
            "event_id": event["id"],
            "seq": event["seq"],
            "time": event["time"],
            "site": event.get("site"),
            "node": event.get("node"),
            "line": event.get("source"),
        }
        if event["type"] == "batch.completed":
            materials = list(data.get("materials") or [])
        else:
            consumed = await self._typed("material.consumed", "batch", lot)
            materials = [e["data"] for e in consumed if e["data"].get("batch") == lot]
            view["started"] = event["time"]
        view["materials"] = [await self._material(m, lot) for m in _unique(materials)]
        view["shipments"], view["reconciliation"] = [], None
        serial = data.get("serial") if event["type"] == "batch.completed" else None
        view["packed_into"], packing = await aggregation.packed_into(
            self, data.get("gtin"), serial, lot
        )
        self.chain |= {e["seq"]: e for e in packing}
        if event["type"] == "batch.completed":
            completed, shipped = await lot_events(self._history, data.get("gtin"), lot)
            mine = [
                s
                for s in shipped
                if not s["data"].get("serial") or s["data"]["serial"] == data.get("serial")
            ]
            view["shipments"] = [_scan_view(s) for s in mine]
            self.chain |= {s["seq"]: s for s in mine}
            if completed:
                view["reconciliation"] = reconcile(completed, shipped, packing).as_data()
        return view

    async def _material(self, material: dict[str, Any], batch_lot: str) -> dict[str, Any]:
        related = await self._lot_key_events(material)
        if material.get("sscc"):
            related = related + await self.events("sscc", str(material["sscc"]))
        seen: set[int] = set()
        received, consumed = [], []
        for e in related:
            if e["seq"] in seen:
                continue
            seen.add(e["seq"])
            if e["type"] == "goods.received":
                received.append(_scan_view(e))
            elif e["type"] == "material.consumed" and e["data"].get("batch") == batch_lot:
                consumed.append(_scan_view(e))
            else:
                continue
            self.chain[e["seq"]] = e
        fields = ("gtin", "lot", "serial", "sscc", "raw")
        return {
            **{k: material[k] for k in fields if k in material},
            "consumed": consumed,
            "received": received,
        }


def _unique(materials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Material inputs once each: by GTIN+lot (the lot is the input), else by the item."""
    out: dict[tuple[object, ...], dict[str, Any]] = {}
    for m in materials:
        if m.get("lot"):
            key: tuple[object, ...] = (m.get("gtin"), m["lot"])
            out.setdefault(key, {k: m[k] for k in ("gtin", "lot") if k in m})
        else:
            out.setdefault((m.get("gtin"), m.get("serial"), m.get("sscc"), m.get("raw")), m)
    return list(out.values())


def _scan_view(event: dict[str, Any]) -> dict[str, Any]:
    data = event["data"]
    return {
        "time": event["time"],
        "site": event.get("site"),
        "node": event.get("node"),
        "source": event.get("source"),
        "event_id": event["id"],
        **{k: data[k] for k in ("gtin", "lot", "serial", "sscc", "quantity", "raw") if k in data},
    }


async def trace_file(path: Path, query: str) -> dict[str, Any] | None:
    """The trace of `query` from an outbox file, read-only (the agent may be running)."""
    async with HistoryReader(path) as history:
        return await trace(history, query)
