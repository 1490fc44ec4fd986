"""Reconciliation across nodes: per lot, what the line counted against what the docks shipped.

The agent's reconciliation (`agent.history.reconcile`) sees a lot only when one node saw both
the batch completing and the shipment leaving. Here the same numbers and discrepancies are
worked out over the plant store (`PlantHistory`), for the lots completed most recently on any
line of the site: `plc_quantity` (the line's PLC), `codes_stamped`, `units_packed`,
`units_shipped` (any outbound dock), `status` and `discrepancies`, plus the nodes that made
and shipped the lot. `units_packed` is the agent's count (`agent.history.aggregation`: the
lot's items on SSCCs now) over the aggregation events of every pallet that held the lot, on any
node; it is null while no packing station reported the lot. The pallets are found as the
agent finds them: the aggregation events indexed under the lot (its item children's keys,
`agent.plant.store`), then every aggregation event of those SSCCs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.history import aggregation
from agent.history.reader import envelope_json
from agent.history.reconcile import lot_events, reconcile
from agent.plant.history import PlantHistory
from agent.plant.schema import EVENTS

if TYPE_CHECKING:
    import psycopg

DEFAULT_LOTS = 200
STATUSES = frozenset({"discrepancy", "balanced", "open", "unknown"})

_RECENT_LOTS = f"""
SELECT data->>'gtin', data->>'lot', max(time) AS newest FROM {EVENTS}
WHERE site = %s AND type = 'batch.completed' AND data->>'lot' IS NOT NULL
GROUP BY 1, 2 ORDER BY newest DESC LIMIT %s
"""  # noqa: S608


async def plant_reconciliation(
    conn: psycopg.AsyncConnection[Any],
    site: str,
    *,
    status: str | None = None,
    lots: int = DEFAULT_LOTS,
) -> list[dict[str, Any]]:
    """The reconciliation of the `lots` most recently completed lots, newest first."""
    cur = await conn.execute(_RECENT_LOTS.encode(), (site, lots))
    recent = await cur.fetchall()
    history = PlantHistory(conn, site=site)
    out = []
    for gtin, lot, _ in recent:
        completed, shipped = await lot_events(history, gtin, lot)
        if not completed:
            continue
        packing = await _packing(history, gtin, lot)
        numbers = reconcile(completed, shipped, packing or ()).as_data()
        if status is not None and numbers["status"] != status:
            continue
        if packing is None:
            numbers["units_packed"] = None  # no packing station reported this lot
        numbers["made_at"] = sorted({str(e.get("node")) for e in completed})
        numbers["shipped_from"] = sorted({str(e.get("node")) for e in shipped})
        out.append(numbers)
    return out


async def _packing(
    history: PlantHistory, gtin: str | None, lot: str
) -> list[dict[str, Any]] | None:
    """The aggregation events of every SSCC that ever held items of the lot (None: not one)."""
    ssccs = sorted(
        {
            str(e["data"].get("sscc"))
            for e in map(envelope_json, await history.lookup("lot", lot))
            if e["type"] in aggregation.TYPES and _holds_product(e["data"], gtin)
        }
    )
    if not ssccs:
        return None
    events = {
        e["id"]: e
        for found in await history.lookup_many("sscc", ssccs)
        for e in map(envelope_json, found)
        if e["type"] in aggregation.TYPES
    }
    return sorted(events.values(), key=lambda e: (e["time"], e["seq"]))


def _holds_product(data: dict[str, Any], gtin: str | None) -> bool:
    """Whether an aggregation event's children (or removed) include an item of `gtin`."""
    children = data.get("children") or data.get("removed") or []
    return gtin is None or any(isinstance(c, dict) and c.get("gtin") == gtin for c in children)
