"""A lot's chain as the FSMA 204 sortable spreadsheet: one CSV row per critical tracking event.

US FSMA 204 (21 CFR 1, subpart S) asks for the key data elements (KDEs) of each critical
tracking event (CTE) of a food on the traceability list, as a sortable spreadsheet within 24
hours. From a plant report (`agent.plant.history.plant_report`) this makes one row per event:

- `goods.received` → `receiving`, `batch.completed` → `transformation`, `goods.shipped` →
  `shipping` (every other event is no CTE and is left out).

Columns, first those of the contract, then the plant's own:

| column | from |
| --- | --- |
| `cte` | the event type as above |
| `traceability_lot_code` | the lot (AI 10; the batch's lot for a transformation) |
| `gtin` | the GTIN (AI 01/02; the batch's product) |
| `quantity` | the count on the label (AI 30/37); the PLC's count for a transformation |
| `unit_of_measure` | `each` where a quantity is given |
| `location` | `SITE/NODE` (the agent's site and node: the dock or line) |
| `date`, `time` | the event time in the plant's time zone (ISO date; `HH:MM:SS±HH:MM`) |
| `reference_document` | the work order for a transformation (`WO …`) |
| `event_id` | the event's id |
| `node`, `source` | the node, and the scanner or PLC that read it |
| `sscc`, `serial`, `trace_code` | the pallet, the item, the batch's code |
| `input_lots` | a transformation's consumed lots, `GTIN|LOT` separated by `;` |

Left empty because the plant does not capture them (the company's ERP/WMS has them): the
immediate previous source and the immediate subsequent recipient (ship-from/ship-to business
names and addresses), the traceability lot code source, the product description, and the
reference documents of receiving and shipping (bill of lading, purchase order, invoice).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from agent.text import shown

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

COLUMNS = (
    "cte",
    "traceability_lot_code",
    "gtin",
    "quantity",
    "unit_of_measure",
    "location",
    "date",
    "time",
    "reference_document",
    "event_id",
    "node",
    "source",
    "sscc",
    "serial",
    "trace_code",
    "input_lots",
)
CTES = {
    "goods.received": "receiving",
    "batch.completed": "transformation",
    "goods.shipped": "shipping",
}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = shown(str(value))  # text from the store is shown, never run by a spreadsheet
    return "'" + text if text.startswith(_FORMULA_START) else text


def cte_row(event: Mapping[str, Any], zone: ZoneInfo | None) -> dict[str, object] | None:
    """The row of one event, None when it is no critical tracking event."""
    cte = CTES.get(str(event.get("type")))
    if cte is None:
        return None
    data = event.get("data") or {}
    moment = datetime.fromisoformat(str(event["time"]))
    local = moment.astimezone(zone) if zone else moment.astimezone()
    quantity = data.get("quantity")
    if isinstance(quantity, bool) or not isinstance(quantity, int | float):
        quantity = None
    inputs = ""
    if cte == "transformation":
        inputs = ";".join(
            dict.fromkeys(
                f"{m.get('gtin') or ''}|{m['lot']}"
                for m in data.get("materials") or []
                if isinstance(m, dict) and m.get("lot")
            )
        )
    return {
        "cte": cte,
        "traceability_lot_code": data.get("lot"),
        "gtin": data.get("gtin"),
        "quantity": quantity,
        "unit_of_measure": "each" if quantity is not None else None,
        "location": f"{event.get('site')}/{event.get('node')}",
        "date": local.date().isoformat(),
        "time": local.isoformat(timespec="seconds").partition("T")[2],
        "reference_document": f"WO {data['work_order']}"
        if cte == "transformation" and data.get("work_order")
        else None,
        "event_id": event.get("id"),
        "node": event.get("node"),
        "source": event.get("source"),
        "sscc": data.get("sscc"),
        "serial": data.get("serial"),
        "trace_code": data.get("trace_code"),
        "input_lots": inputs or None,
    }


def fsma204_csv(events: Iterable[Mapping[str, Any]], *, timezone: str | None) -> str:
    r"""The CSV (RFC 4180, `\\r\\n`): a header row, then one row per CTE in time order."""
    zone = ZoneInfo(timezone) if timezone else None
    ordered = sorted(events, key=lambda e: (str(e["time"]), str(e.get("id"))))  # UTC, "…Z"
    rows = [r for r in (cte_row(e, zone) for e in ordered) if r is not None]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_cell(row[c]) for c in COLUMNS])
    return out.getvalue()
