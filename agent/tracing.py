"""Trace queries: from any code the plant has in hand to the whole chain this node saw.

Input: a trace code, any GS1 element string (with or without parentheses), a GS1 Digital Link
URI, an SSCC, a lot or a work order. The text is read the way a scanner read is (`agent.scans`)
and looked up by its most specific key first (trace code, GTIN+serial, SSCC, GTIN+lot, then
lot, work order); the first key with history wins.

From what matched, the batches are found: a batch's own events, the batch a shipped code or
pallet (SSCC with content GTIN+lot) came from, or the batches a material lot was consumed into.
For each batch, backward: work order, line, shift/operator, parameters, times, the consumed
material lots and where and when each was received (if scanned here); forward: the shipments
of its codes and lot, and the lot's reconciliation. `trace_command` is `lineside trace` (a
table for people, `--json` for machines); `RuntimeView.trace` serves the same dict over HTTP.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

from agent.history import History, HistoryError, HistoryReader, envelope_json, outbox_path
from agent.reconcile import lot_events, reconcile
from agent.scans import StationRole, interpret
from agent.trace_format import dump_json, render_table

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    from agent.config import Config

EXIT_OK = 0
EXIT_NOT_FOUND = 1
# most specific first: the first kind with history answers the query
_PRIORITY = ("trace_code", "serial", "sscc", "gtin_lot", "lot", "work_order")
_SCANS = ("goods.received", "goods.shipped", "material.consumed")


def identify(query: str) -> list[tuple[str, str]]:
    """The lookup keys a query text stands for, most specific first."""
    text = query.strip()
    if not text:
        return []
    keys: list[tuple[str, str]] = [("trace_code", text)]
    result = interpret(text.encode(), StationRole.INBOUND, max_length=4096)
    if result.type != "scan.rejected":
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
    return {
        "query": query,
        "matched": {"kind": kind, "value": value},
        "batches": [await tracer.batch_view(b) for b in batches],
        "events": seeds,
        "truncated": bool(getattr(history, "truncated", False)),
    }


class Tracer:
    """One trace's lookups (cached: a lot shows up from several sides)."""

    def __init__(self, history: History) -> None:
        self._history = history
        self._cache: dict[tuple[str, str], list[dict[str, Any]]] = {}
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

    async def batches_of(self, seeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The batch events (`batch.completed`, or `batch.started` of open ones) seeds lead to."""
        found: dict[int, dict[str, Any]] = {}
        open_lots: dict[str, dict[str, Any]] = {}
        for seed in seeds:
            data = seed["data"]
            match seed["type"]:
                case "batch.completed":
                    found[seed["seq"]] = seed
                case "batch.started" | "batch.reconciled":
                    completed = await self._typed("batch.completed", "lot", str(data.get("lot")))
                    found |= {e["seq"]: e for e in completed}
                    if seed["type"] == "batch.started" and not completed:
                        open_lots[str(data.get("lot"))] = seed
                case t if t in _SCANS:
                    # our product: the batch of a shipped code, or of a pallet's content lot
                    if data.get("gtin") and data.get("serial"):
                        serial_key = f"{data['gtin']}|{data['serial']}"
                        hits = await self._typed("batch.completed", "serial", serial_key)
                        found |= {e["seq"]: e for e in hits}
                    lot_events_ = await self._lot_key_events(data)
                    found |= {e["seq"]: e for e in lot_events_ if e["type"] == "batch.completed"}
                    # a material: the batches it was consumed into
                    into = {str(data["batch"])} if data.get("batch") else set()
                    into |= {
                        str(e["data"]["batch"])
                        for e in lot_events_
                        if e["type"] == "material.consumed" and e["data"].get("batch")
                    }
                    for lot in sorted(into):
                        completed = await self._typed("batch.completed", "lot", lot)
                        found |= {e["seq"]: e for e in completed if e["data"].get("lot") == lot}
                        if not completed:
                            started = await self._typed("batch.started", "lot", lot)
                            open_lots |= {lot: started[-1]} if started else {}
        done = {str(e["data"].get("lot")) for e in found.values()}
        opened = [e for lot, e in open_lots.items() if lot not in done]
        return [found[s] for s in sorted(found)] + opened

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
                view["reconciliation"] = reconcile(completed, shipped).as_data()
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


def trace_command(config: Config, args: argparse.Namespace) -> int:
    """`lineside trace CODE [--json] [-o FILE]`: 0 when found, 1 when not."""
    try:
        result = asyncio.run(trace_file(outbox_path(config.agent.data_dir), str(args.code)))
    except HistoryError as exc:
        print(f"lineside: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_NOT_FOUND
    if result is None:
        print(f"lineside: no history of {args.code!r} on this node", file=sys.stderr)  # noqa: T201
        return EXIT_NOT_FOUND
    text = dump_json(result) if args.json else render_table(result)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:  # noqa: PTH123
            out.write(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


async def measure_trace(workdir: Path, events: int) -> dict[str, float]:
    """Build a history of `events` realistic events in `workdir` and time trace queries.

    Returns seconds: `build_s` (writing the history), and per query kind (`trace_code_s`,
    `sscc_s`, `lot_s`, `material_lot_s`, `digital_link_s`), plus `max_query_s` and `events`.
    """
    from agent.trace_bench import build_history, time_queries  # noqa: PLC0415

    path = workdir / "trace-bench.db"
    build_s, probes = await build_history(path, events)
    figures = {"events": float(events), "build_s": build_s}
    figures |= await time_queries(path, probes)
    return figures
