"""The plant store read as the trace engine's history: one query for many keys, same answers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import psycopg

from agent.plant.bench import sample_drafts
from agent.plant.history import PlantHistory, plant_trace
from agent.plant.reconciliation import plant_reconciliation
from sync.base import Envelope
from sync.postgres import INSERT, row_columns

if TYPE_CHECKING:
    from plant_support import Plant

GTIN = "09501101530003"


async def test_many_keys_at_once_answer_as_one_at_a_time(plant: Plant) -> None:
    drafts = sample_drafts(2000, node=3)
    envelopes = [Envelope(n, d.id, d.route, d.payload(n), 0) for n, d in enumerate(drafts, 1)]
    async with await psycopg.AsyncConnection.connect(
        plant.cluster.admin_conninfo(), autocommit=True
    ) as conn:
        async with conn.transaction():
            await conn.execute(INSERT, row_columns(envelopes))
        serials = [f"{GTIN}|{n:06d}" for n in range(2, 2000, 4)] + [f"{GTIN}|nope"]
        lots = ["ML0300000", "ML0300003", "nope"]
        one = PlantHistory(conn, site="bench")
        singly = [[e.id for e in await one.lookup("serial", s)] for s in serials]
        singly += [[e.id for e in await one.lookup("lot", lot)] for lot in lots]
        many = PlantHistory(conn, site="bench")
        together = [[e.id for e in found] for found in await many.lookup_many("serial", serials)]
        together += [[e.id for e in found] for found in await many.lookup_many("lot", lots)]
        assert together == singly
        assert sum(map(len, singly[:-4])) == len(serials) - 1  # one batch per serial
        assert singly[-1] == []
        # a lot of 50 batches: the reconciliation's per-batch look-ups go as one query
        trace = await plant_trace(conn, "bench", f"(01){GTIN}(10)L0300000(21)000002")
        assert trace is not None
        [batch] = trace["batches"]
        assert (batch["node"], batch["seq"]) == ("node-3", 2)
        assert batch["reconciliation"]["batches"] == 50


def stored(n: int, node: str, type_: str, data: dict[str, object]) -> Envelope:
    ident = f"01JDQ2V8W7K3M5N9P0R5{n:06d}"
    body = {
        "id": ident,
        "type": type_,
        "time": f"2026-11-24T10:00:{n:02d}.000Z",
        "site": "recon",
        "node": node,
        "seq": n,
        "source": "test",
        "data": data,
    }
    return Envelope(n, ident, type_, json.dumps(body).encode(), 0)


async def test_reconciliation_across_nodes_finds_a_lot_shipped_beyond_its_count(
    plant: Plant,
) -> None:
    made = {"gtin": GTIN, "lot": "OVER1", "serial": "000001", "quantity": 10}

    def pallet(sscc: str, lot: str, count: int) -> dict[str, object]:
        return {"sscc": sscc, "gtin": GTIN, "lot": lot, "quantity": count}

    rows = [
        stored(1, "line-2", "batch.completed", {**made, "trace_code": "(01)X(10)OVER1(21)000001"}),
        stored(2, "dock-a", "goods.shipped", pallet("1", "OVER1", 8)),
        stored(3, "dock-b", "goods.shipped", pallet("2", "OVER1", 7)),
        stored(4, "line-2", "batch.completed", {**made, "lot": "EVEN1", "serial": "000002",
                                                "trace_code": "(01)X(10)EVEN1(21)000002"}),
        stored(5, "dock-a", "goods.shipped", pallet("3", "EVEN1", 10)),
        # packed at another node: three items of EVEN1 on an SSCC, then one taken off
        stored(6, "pack-1", "aggregation.completed", {"sscc": "0095011010000000017", "count": 3,
               "children": [{"kind": "item", "gtin": GTIN, "lot": "EVEN1", "serial": f"U{n}"}
                            for n in range(3)]}),
        stored(7, "pack-1", "aggregation.changed", {"sscc": "0095011010000000017",
               "removed": [{"kind": "item", "gtin": GTIN, "lot": "EVEN1", "serial": "U0"}]}),
    ]  # fmt: skip
    async with await psycopg.AsyncConnection.connect(
        plant.cluster.admin_conninfo(), autocommit=True
    ) as conn:
        async with conn.transaction():
            await conn.execute(INSERT, row_columns(rows))
        lots = {r["lot"]: r for r in await plant_reconciliation(conn, "recon")}
        assert set(lots) == {"OVER1", "EVEN1"}
        over = lots["OVER1"]
        assert (over["plc_quantity"], over["units_shipped"], over["status"]) == (
            10,
            15,
            "discrepancy",
        )
        assert (over["made_at"], over["shipped_from"]) == (["line-2"], ["dock-a", "dock-b"])
        assert over["discrepancies"]
        assert lots["EVEN1"]["status"] == "balanced"
        assert lots["EVEN1"]["units_packed"] == 2  # packed on pack-1, one taken off again
        assert over["units_packed"] is None  # no packing station reported it
        only = await plant_reconciliation(conn, "recon", status="discrepancy")
        assert [r["lot"] for r in only] == ["OVER1"]
