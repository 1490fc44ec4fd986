"""Trace queries over a real outbox file: every input form, backward and forward, read-only.

Also the pieces that keep the history honest: retention (delivered and old only) and the
reconciler following the outbox (`batch.reconciled`, discrepancy alarms).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

import pytest
from support import wait_until
from trace_history import (
    LOT,
    MATERIAL_1,
    MATERIAL_2,
    PALLET_1,
    PALLET_2,
    PALLET_OUT,
    PRODUCT,
    SERIAL,
    TRACE_CODE,
    carton_label,
    complete_batch,
    pallet_label,
    scan,
    write_chain,
)

from agent.alarms import AlarmBoard
from agent.cli.main import main
from agent.cli.trace_bench import measure_trace, sscc
from agent.config.scanners import StationRole
from agent.events import EventFactory
from agent.history.reader import HistoryError, HistoryReader
from agent.history.reconcile import CURSOR_KEY, Reconciler, reconcile
from agent.history.retention import DAY_S, Retention
from agent.history.trace import identify, trace, trace_file
from sync.outbox import Outbox

if TYPE_CHECKING:
    from pathlib import Path


async def traced(path: Path, query: str) -> dict[str, Any]:
    result = await trace_file(path, query)
    assert result is not None, f"no trace of {query!r}"
    return result


async def test_sscc_of_a_shipped_pallet_traces_back_to_batch_and_material_receipts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    async with Outbox(path) as outbox:
        await write_chain(outbox)
    result = await traced(path, PALLET_OUT)
    assert result["matched"] == {"kind": "sscc", "value": PALLET_OUT}
    [batch] = result["batches"]
    assert batch["trace_code"] == TRACE_CODE
    assert (batch["lot"], batch["serial"], batch["work_order"]) == (LOT, SERIAL, "WO-7")
    assert (batch["shift"], batch["operator"]) == ("early", "OP-7")
    assert batch["params"] == {"fill_temp_c": 4.1, "line_speed": 118}
    assert batch["line"] == "plc:filler"
    materials = {(m["gtin"], m["lot"]): m for m in batch["materials"]}
    assert set(materials) == {(MATERIAL_1, "MA"), (MATERIAL_2, "MB")}
    assert len(materials[MATERIAL_1, "MA"]["consumed"]) == 2
    [receipt] = materials[MATERIAL_1, "MA"]["received"]
    assert receipt["sscc"] == PALLET_1
    assert receipt["source"] == "scanner:dock-in-1"
    assert materials[MATERIAL_2, "MB"]["received"][0]["sscc"] == PALLET_2
    [shipment] = batch["shipments"]
    assert (shipment["sscc"], shipment["quantity"]) == (PALLET_OUT, 100)
    rec = batch["reconciliation"]
    assert (rec["plc_quantity"], rec["units_shipped"], rec["status"]) == (120, 100, "open")


@pytest.mark.parametrize(
    ("query", "kind"),
    [
        (TRACE_CODE, "trace_code"),
        (f"01{PRODUCT}10{LOT}\x1d11261124\x1d21{SERIAL}", "serial"),
        (f"https://id.gs1.org/01/{PRODUCT}/21/{SERIAL}?10={LOT}", "serial"),
        (f"(01){PRODUCT}(10){LOT}", "gtin_lot"),
        (LOT, "lot"),
        ("WO-7", "work_order"),
        (f"  {PALLET_OUT}\n", "sscc"),
    ],
)
async def test_every_input_form_finds_the_batch(tmp_path: Path, query: str, kind: str) -> None:
    path = tmp_path / "outbox.db"
    async with Outbox(path) as outbox:
        await write_chain(outbox)
    result = await traced(path, query)
    assert result["matched"]["kind"] == kind
    assert [b["trace_code"] for b in result["batches"]] == [TRACE_CODE]


async def test_a_material_lot_traces_forward_into_its_batch(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with Outbox(path) as outbox:
        await write_chain(outbox)
    for query in (f"(01){MATERIAL_2}(10)MB", PALLET_2):
        result = await traced(path, query)
        assert [b["lot"] for b in result["batches"]] == [LOT], query
        assert result["batches"][0]["shipments"][0]["sscc"] == PALLET_OUT


async def test_an_open_batch_shows_its_materials_so_far(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    factory = EventFactory("plant-a", "line-3")
    async with Outbox(path) as outbox:
        await outbox.append(
            factory.draft("batch.started", "plc:filler", {"lot": "OPEN1"}, keys=[("lot", "OPEN1")])
        )
        await scan(
            outbox,
            factory,
            carton_label(MATERIAL_1, "MZ", "1"),
            StationRole.LINE,
            "scanner:l",
            batch="OPEN1",
        )
    result = await traced(path, f"(01){MATERIAL_1}(10)MZ")
    [batch] = result["batches"]
    assert (batch["status"], batch["lot"]) == ("open", "OPEN1")
    assert batch["materials"][0]["lot"] == "MZ"


async def test_unknown_codes_and_missing_history(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with Outbox(path) as outbox:
        await write_chain(outbox)
    assert await trace_file(path, "NO-SUCH-LOT") is None
    assert await trace_file(path, "   ") is None
    with pytest.raises(HistoryError, match="no event history"):
        await trace_file(tmp_path / "absent.db", LOT)
    assert identify("") == []


async def test_the_reader_is_read_only_and_sees_commits_while_the_agent_writes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    async with Outbox(path) as outbox:
        chain = await write_chain(outbox)
        async with HistoryReader(path) as history:
            assert await trace(history, "LATER") is None
            # the writer keeps committing while the reader is open
            await complete_batch(outbox, chain.factory, lot="LATER", serial="000002")
            result = await trace(history, "LATER")
            assert result is not None
            assert result["batches"][0]["serial"] == "000002"
            conn = history._conn
            assert conn is not None
            with pytest.raises(Exception, match=r"readonly|read-only|query_only"):
                await conn.execute("DELETE FROM events")
        assert outbox.last_seq == len(chain.envelopes) + 1


def write_agent_config(tmp_path: Path) -> Path:
    config = tmp_path / "lineside.toml"
    config.write_text(
        "[agent]\n"
        'site = "plant-a"\nnode = "line-3"\n'
        f'data_dir = "{tmp_path / "data"}"\n'
        'timezone = "Asia/Shanghai"\n'
        "[[destinations]]\n"
        'name = "b"\nkind = "mqtt"\nurl = "mqtt://127.0.0.1:1"\n'
    )
    (tmp_path / "data").mkdir()
    return config


async def test_trace_command_prints_a_table_or_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_agent_config(tmp_path)
    async with Outbox(tmp_path / "data" / "outbox.db") as outbox:
        await write_chain(outbox)
    out = tmp_path / "trace.json"
    assert (
        await asyncio.to_thread(
            main, ["trace", "-c", str(config), PALLET_OUT, "--json", "-o", str(out)]
        )
        == 0
    )
    assert json.loads(out.read_text())["batches"][0]["trace_code"] == TRACE_CODE
    assert await asyncio.to_thread(main, ["trace", "-c", str(config), PALLET_OUT]) == 0
    table = capsys.readouterr().out
    assert f"Batch {TRACE_CODE}" in table
    assert "operator    OP-7" in table
    assert "received" in table
    assert PALLET_1 in table
    assert await asyncio.to_thread(main, ["trace", "-c", str(config), "NOPE"]) == 1
    assert "no history of 'NOPE'" in capsys.readouterr().err


async def test_measure_trace_builds_a_history_and_times_queries(tmp_path: Path) -> None:
    figures = await measure_trace(tmp_path, 3000)
    assert figures["events"] == 3000
    assert {"trace_code_s", "sscc_s", "lot_s", "material_lot_s", "max_query_s"} <= set(figures)
    async with HistoryReader(tmp_path / "trace-bench.db") as history:
        result = await trace(history, "L0000010")
        assert result is not None
        assert len(result["batches"]) == 1
        assert len(result["batches"][0]["shipments"]) == 6


async def test_retention_prunes_old_delivered_history_but_never_undelivered(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with Outbox(path, destinations=["broker", "erp"]) as outbox:
        chain = await write_chain(outbox)
        shipped = chain.envelopes[-1].seq
        outbox.advance("broker", shipped)
        outbox.advance("erp", 4)  # the ERP has not got the rest yet
        retention = Retention(outbox, days=30, clock=lambda: time.time() + 31 * DAY_S)
        assert await Retention(outbox, days=30).prune_once() == 0  # nothing is that old yet
        assert await retention.prune_once() == 4
        assert [await outbox.get(s) for s in range(1, 5)] == [None] * 4
        assert None not in [await outbox.get(s) for s in range(5, shipped + 1)]
        assert await outbox.lookup("sscc", PALLET_1) == []
        outbox.advance("erp", shipped)
        assert await retention.prune_once() == shipped - 5  # the newest row keeps the seq
    with pytest.raises(ValueError, match="positive"):
        Retention(outbox, days=0)


def test_reconcile_counts_and_flags() -> None:
    def event(type_: str, **data: Any) -> dict[str, Any]:
        return {"type": type_, "data": data}

    done = [
        event("batch.completed", gtin=PRODUCT, lot=LOT, serial="1", trace_code="c1", quantity=10)
    ]
    ok = reconcile(done, [event("goods.shipped", gtin=PRODUCT, lot=LOT, sscc="1", quantity=10)])
    assert (ok.status, ok.units_shipped, ok.discrepancies) == ("balanced", 10, ())
    twice = event("goods.shipped", gtin=PRODUCT, lot=LOT, sscc="2", quantity=6)
    over = reconcile(done, [twice, twice, event("goods.shipped", gtin=PRODUCT, serial="9")])
    assert over.status == "discrepancy"
    assert over.units_shipped == 7
    assert any("scanned out 2 times" in d for d in over.discrepancies)
    assert any("never stamped" in d for d in over.discrepancies)
    no_count = reconcile([event("batch.completed", lot=LOT, trace_code="c", quantity=None)], [])
    assert no_count.status == "unknown"
    double = reconcile(done + done, [])
    assert "2 batch.completed events for 1 trace code(s)" in double.discrepancies
    with pytest.raises(ValueError, match="at least one"):
        reconcile([], [])


async def test_reconciler_follows_shipments_and_raises_an_alarm_on_discrepancy(
    tmp_path: Path,
) -> None:
    alarms = AlarmBoard()
    factory = EventFactory("plant-a", "line-3")
    async with Outbox(tmp_path / "outbox.db") as outbox:
        reconciler = Reconciler(outbox, factory=factory, alarms=alarms)
        async with asyncio.TaskGroup() as group:
            task = group.create_task(reconciler.run())
            await write_chain(outbox, ship=100)
            await wait_until(lambda: reconciler.emitted == 1, what="first reconciliation")
            [event] = [
                json.loads(e.payload)
                for e in await outbox.lookup("gtin_lot", f"{PRODUCT}|{LOT}")
                if e.route == "batch.reconciled"
            ]
            assert event["data"]["status"] == "open"
            assert (event["data"]["plc_quantity"], event["data"]["units_shipped"]) == (120, 100)
            assert not alarms.active()
            # a second pallet of 40 makes 140 shipped of 120 counted
            await scan(
                outbox,
                factory,
                pallet_label(sscc(202), PRODUCT, LOT, 40),
                StationRole.OUTBOUND,
                "scanner:dock-out-1",
            )
            await wait_until(lambda: reconciler.emitted == 2, what="second reconciliation")
            [alarm] = alarms.active()
            assert alarm.kind == "reconcile"
            assert "140 units shipped but the PLC counted 120" in alarm.message
            # a shipment of something this node never made is not reconciled
            await scan(
                outbox,
                factory,
                pallet_label(sscc(203), MATERIAL_1, "X", 1),
                StationRole.OUTBOUND,
                "s",
            )
            await wait_until(lambda: outbox.state(CURSOR_KEY) == str(outbox.last_seq))
            assert reconciler.emitted == 2
            task.cancel()


async def test_reconciler_catching_up_reconciles_a_lot_once_as_it_stood(tmp_path: Path) -> None:
    """A completion and its shipment read in one batch give one reconciliation, at the shipment."""
    alarms = AlarmBoard()
    async with Outbox(tmp_path / "outbox.db") as outbox:
        chain = await write_chain(outbox, ship=100)
        await outbox.put_state({CURSOR_KEY: "0"})  # as after a restart with all of it unread
        reconciler = Reconciler(outbox, factory=EventFactory("plant-a", "line-3"), alarms=alarms)
        task = asyncio.create_task(reconciler.run())
        shipped = chain.envelopes[-1]
        await wait_until(lambda: outbox.state(CURSOR_KEY) == str(shipped.seq), what="catch-up")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        reconciled = [
            json.loads(e.payload)
            for e in await outbox.lookup("gtin_lot", f"{PRODUCT}|{LOT}")
            if e.route == "batch.reconciled"
        ]
        assert len(reconciled) == 1  # (the cursor moves with the event, before `emitted` does)
        assert reconciled[0]["data"]["units_shipped"] == 100
        assert shipped.route == "goods.shipped"
