"""The plant's lot reading: the answers of a whole history, from fewer rows.

The trace and the reconciliation read a lot's codes' shipments by serial with
`lookup_each(..., routes={"goods.shipped"})`; the plant history answers that with a typed
query (`PlantHistory.lookup_many(..., routes=)`) that reads only those events. Each answer
here is compared with the engine's answer over the same store read whole (a history that
answers one key at a time, every event of every key, filtered by the engine), and the rows
each side built are counted: equal answers, fewer rows.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import psycopg

from agent.history.reconcile import lot_events
from agent.history.trace import trace
from agent.plant.bench import sample_drafts
from agent.plant.history import PlantHistory, plant_trace, restore_seqs
from sync.base import Envelope
from sync.postgres import INSERT, row_columns

if TYPE_CHECKING:
    from plant_support import Plant

GTIN = "09501101530003"
SITE = "lots"


def stored(n: int, node: str, type_: str, data: dict[str, Any], *, second: int = 0) -> Envelope:
    """Event `n` of `node` (`second`: several events may share one moment)."""
    ident = f"01JDQ2V8W7K3M5N9P0R6{n:06d}"
    moment = second or n
    body = {"id": ident, "type": type_, "time": f"2026-11-24T10:{moment // 60:02d}:"
            f"{moment % 60:02d}.000Z", "site": SITE, "node": node, "seq": n, "source": "test",
            "data": data}  # fmt: skip
    return Envelope(n, ident, type_, json.dumps(body).encode(), 0)


def made(n: int, node: str, lot: str, serial: str, *, second: int = 0) -> Envelope:
    code = f"(01){GTIN}(10){lot}(21){serial}"
    data = {"trace_code": code, "gtin": GTIN, "lot": lot, "serial": serial, "quantity": 5,
            "materials": [{"gtin": GTIN, "lot": f"M{lot}"}]}  # fmt: skip
    return stored(n, node, "batch.completed", data, second=second)


def shipped(n: int, node: str, *, serial: str = "", lot: str = "", count: int = 1) -> Envelope:
    data: dict[str, Any] = {"sscc": f"0095011010000{n:05d}", "gtin": GTIN, "quantity": count}
    data |= {"serial": serial} if serial else {}
    data |= {"lot": lot} if lot else {}
    return stored(n, node, "goods.shipped", data)


# Lot A on line-1 (codes 000001-000003) shares its serials with lot B on line-2 and lot C on
# line-3: GTIN+serial look-ups of A's codes find B's and C's batches too. A's codes ship
# singly (by serial, no lot), twice for one of them, and a pallet of the lot ships by lot; one
# item is on a pallet packed at pack-1; a code never stamped ships; two events share a moment.
STORE = [
    made(1, "line-1", "A", "000001"),
    made(2, "line-1", "A", "000002"),
    made(3, "line-1", "A", "000003", second=4),
    made(4, "line-2", "B", "000001", second=4),
    made(5, "line-2", "B", "000002"),
    made(6, "line-3", "C", "000001"),
    made(7, "line-3", "C", "000003"),
    stored(8, "dock-in", "goods.received", {"gtin": GTIN, "lot": "MA", "serial": "000001"}),
    shipped(9, "dock-out", serial="000001"),
    shipped(10, "dock-out", serial="000002"),
    shipped(11, "dock-out", serial="000002"),
    shipped(12, "dock-out", lot="A", count=2),
    shipped(13, "dock-out", serial="000009"),
    shipped(14, "dock-2", serial="000001"),
    stored(15, "pack-1", "aggregation.completed", {"sscc": "009501101000000999", "count": 1,
           "children": [{"kind": "item", "gtin": GTIN, "lot": "A", "serial": "000003"}]}),
    made(16, "line-1", "A", "000004"),
    shipped(17, "dock-out", serial="000004"),
]  # fmt: skip


class Whole:
    """A plant history read whole: one key at a time, every event of it (no typed reading)."""

    def __init__(self, history: PlantHistory) -> None:
        self.history = history

    @property
    def truncated(self) -> bool:
        """Whether a look-up hit the history's limit."""
        return self.history.truncated

    async def lookup(self, kind: str, value: str) -> list[Envelope]:
        """The history's `lookup`."""
        return await self.history.lookup(kind, value)


async def _answers(
    conn: psycopg.AsyncConnection[Any], query: str, *, limit: int
) -> tuple[Any, Any, int, int]:
    """The trace of `query` over a history read whole and as the plant reads it; rows built."""
    whole = PlantHistory(conn, site=SITE, limit=limit)
    expected = restore_seqs(await trace(Whole(whole), query), whole.node_seqs)
    lean = PlantHistory(conn, site=SITE, limit=limit)
    got = restore_seqs(await trace(lean, query), lean.node_seqs)
    return expected, got, len(whole.node_seqs), len(lean.node_seqs)


async def test_a_plant_trace_is_the_whole_historys_from_fewer_rows(plant: Plant) -> None:
    async with await psycopg.AsyncConnection.connect(
        plant.cluster.admin_conninfo(), autocommit=True
    ) as conn:
        async with conn.transaction():
            await conn.execute(INSERT, row_columns(STORE))
        queries = [f"(01){GTIN}(10)A(21)000001", f"(01){GTIN}(10)B(21)000001", "A", "MA",
                   f"(01){GTIN}(21)000002", "009501101000000012", "009501101000000999",
                   f"(01){GTIN}(10)C(21)000003"]  # fmt: skip
        fewer = 0
        for query in queries:
            for limit in (2000, 3, 1):  # truncated look-ups are cut at the same events
                expected, got, whole, lean = await _answers(conn, query, limit=limit)
                assert expected is not None, query
                assert got == expected, (query, limit)
                assert lean <= whole
                fewer += whole - lean
        assert fewer > 0  # other lines' batches with the same serials were not read
        # what `plant trace` answers: the same trace, with the lot's shipments by serial
        answer = await plant_trace(conn, SITE, f"(01){GTIN}(10)A(21)000002")
        assert answer is not None
        [batch] = answer["batches"]
        assert [s["event_id"][-2:] for s in batch["shipments"]] == ["10", "11", "12"]
        reconciliation = batch["reconciliation"]  # 9, 10, 11, 12 (2 units), 14, 17
        assert (reconciliation["units_shipped"], reconciliation["status"]) == (7, "open")


async def test_a_lots_events_are_the_whole_historys_from_fewer_rows(
    plant: Plant,
) -> None:
    async with await psycopg.AsyncConnection.connect(
        plant.cluster.admin_conninfo(), autocommit=True
    ) as conn:
        # 3 nodes of the bench's shape: every lot's serials are on each of the other lines
        rows = [
            Envelope(n, f"{node}{d.id}", d.route, d.payload(n), 0)
            for node in (1, 2, 3)
            for n, d in enumerate(sample_drafts(400, node=node), 1)
        ]
        async with conn.transaction():
            await conn.execute(INSERT, row_columns(rows))
        for lot in ("L0100000", "L0200001", "nope"):
            whole = PlantHistory(conn, site="bench")
            expected = restore_seqs(await lot_events(Whole(whole), GTIN, lot), whole.node_seqs)
            lean = PlantHistory(conn, site="bench")
            got = restore_seqs(await lot_events(lean, GTIN, lot), lean.node_seqs)
            assert got == expected, lot
            if lot != "nope":
                assert len(expected[0]) == 50
                assert len(lean.node_seqs) == 50 < len(whole.node_seqs) == 150
