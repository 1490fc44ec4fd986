"""Compliance reports of one lot: `lineside report --lot LOT --format csv|json|epcis`.

The report is the whole chain this node saw of a lot (`LOT` or `GTIN|LOT`): the lot's own
batches with their materials and receipts and shipments (or, for a material lot, its receipt
and the batches it went into), every event of that chain, and the reconciliation of each
batch lot with its discrepancies.

- `json`: `{"lot", "generated", "batches", "reconciliation", "discrepancies", "events"}`, the
  batches as `lineside trace --json` shows them, `events` the envelopes in seq order.
- `csv`: one row per event of the chain, then one `reconciliation` row per batch lot; columns
  `CSV_COLUMNS`, cells that a spreadsheet would run as a formula neutralised with a `'`.
- `epcis`: an EPCIS 2.0 `EPCISDocument` (see `agent.history.epcis` for the mapping).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agent.events import format_time
from agent.history.epcis import epcis_document
from agent.history.reader import History, HistoryReader, envelope_json
from agent.history.trace import Tracer
from agent.history.trace_format import dump_json
from agent.text import shown

if TYPE_CHECKING:
    from pathlib import Path

CSV_COLUMNS = (
    "seq",
    "time",
    "type",
    "event_id",
    "site",
    "node",
    "source",
    "gtin",
    "lot",
    "serial",
    "sscc",
    "quantity",
    "batch",
    "trace_code",
    "work_order",
    "shift",
    "operator",
    "status",
    "detail",
)
_CHAIN_TYPES = {
    "goods.received",
    "material.consumed",
    "batch.started",
    "batch.completed",
    "goods.shipped",
    "batch.reconciled",
    "aggregation.completed",
    "aggregation.changed",
}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_IN_COLUMNS = {"gtin", "lot", "serial", "sscc", "quantity", "batch", "trace_code", "work_order"}


async def lot_report(history: History, lot: str) -> dict[str, Any] | None:
    """The report of `lot` (`LOT` or `GTIN|LOT`), None when this node has no history of it."""
    gtin, _, _ = lot.rpartition("|")
    kind = "gtin_lot" if gtin else "lot"
    seeds = [envelope_json(e) for e in await history.lookup(kind, lot)]
    if not seeds:
        return None
    tracer = Tracer(history)
    batches = [await tracer.batch_view(b) for b in await tracer.batches_of(seeds)]
    chain = tracer.chain | {s["seq"]: s for s in seeds if s["type"] in _CHAIN_TYPES}
    lots: dict[str, dict[str, Any]] = {}
    for batch in batches:
        for started in await tracer.events("lot", str(batch.get("lot"))):
            if started["type"] == "batch.started" and started["data"].get("lot") == batch["lot"]:
                chain[started["seq"]] = started
        rec = batch.get("reconciliation")
        if rec is not None:
            lots.setdefault(f"{rec['gtin']}|{rec['lot']}", rec)
            for reconciled in await history.lookup("gtin_lot", f"{rec['gtin']}|{rec['lot']}"):
                event = envelope_json(reconciled)
                if event["type"] == "batch.reconciled":
                    chain[event["seq"]] = event
    reconciliation = list(lots.values())
    return {
        "lot": lot,
        "generated": format_time(datetime.now(UTC)),
        "batches": batches,
        "reconciliation": reconciliation,
        "discrepancies": any(r["discrepancies"] for r in reconciliation),
        "events": [chain[s] for s in sorted(chain)],
        "truncated": bool(getattr(history, "truncated", False)),
    }


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = shown(text)  # old histories may hold control characters: escaped, never raw
    return "'" + text if text.startswith(_FORMULA_START) else text


def report_csv(report: dict[str, Any]) -> str:
    """The report as CSV: the chain's events, then the reconciliation of each batch lot."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for event in report["events"]:
        data = event["data"]
        rest = {k: v for k, v in data.items() if k not in _IN_COLUMNS | {"shift", "operator"}}
        row = {
            "seq": event["seq"],
            "time": event["time"],
            "type": event["type"],
            "event_id": event["id"],
            "site": event.get("site"),
            "node": event.get("node"),
            "source": event.get("source"),
            **{k: data.get(k) for k in _IN_COLUMNS},
            "shift": data.get("shift"),
            "operator": data.get("operator"),
            "status": data.get("status"),
            "detail": rest or None,
        }
        writer.writerow([_cell(row.get(c)) for c in CSV_COLUMNS])
    for rec in report["reconciliation"]:
        row = {
            "type": "reconciliation",
            "gtin": rec["gtin"],
            "lot": rec["lot"],
            "quantity": rec["plc_quantity"],
            "status": rec["status"],
            "detail": {k: rec[k] for k in ("codes_stamped", "units_shipped", "discrepancies")},
        }
        writer.writerow([_cell(row.get(c)) for c in CSV_COLUMNS])
    return out.getvalue()


def render_report(report: dict[str, Any], fmt: str, *, timezone: str | None) -> str:
    """The report as text in `fmt` (csv, json or epcis)."""
    match fmt:
        case "csv":
            return report_csv(report)
        case "epcis":
            return dump_json(epcis_document(report["events"], timezone=timezone))
        case "json":
            return dump_json(report)
        case _:
            raise ValueError(f"unknown report format {fmt!r}")


async def report_file(path: Path, lot: str) -> dict[str, Any] | None:
    """The report of `lot` from an outbox file, read-only (the agent may be running)."""
    async with HistoryReader(path) as history:
        return await lot_report(history, lot)
