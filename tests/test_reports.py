"""Lot reports: JSON chain, CSV rows (formula-safe), the CLI, and discrepancies flagged."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from typing import TYPE_CHECKING

import pytest
from test_tracing import write_agent_config
from trace_history import (
    LOT,
    MATERIAL_1,
    PALLET_OUT,
    PRODUCT,
    TRACE_CODE,
    pallet_label,
    scan,
    write_chain,
)

from agent.cli.main import main
from agent.cli.trace_bench import sscc
from agent.config.scanners import StationRole
from agent.history.reader import HistoryReader
from agent.history.reports import CSV_COLUMNS, lot_report, render_report, report_csv
from sync.outbox import Outbox

if TYPE_CHECKING:
    from pathlib import Path


async def test_json_report_holds_the_whole_chain(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with Outbox(path) as outbox:
        chain = await write_chain(outbox)
    async with HistoryReader(path) as history:
        report = await lot_report(history, f"{PRODUCT}|{LOT}")
        assert await lot_report(history, "NOPE") is None
    assert report is not None
    assert [e["seq"] for e in report["events"]] == [e.seq for e in chain.envelopes]
    assert report["batches"][0]["trace_code"] == TRACE_CODE
    [rec] = report["reconciliation"]
    assert (rec["status"], rec["plc_quantity"], rec["units_shipped"]) == ("open", 120, 100)
    assert report["discrepancies"] is False
    assert json.loads(render_report(report, "json", timezone=None))["lot"] == f"{PRODUCT}|{LOT}"
    with pytest.raises(ValueError, match="unknown report format"):
        render_report(report, "xml", timezone=None)


async def test_csv_rows_and_discrepancies(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with Outbox(path) as outbox:
        chain = await write_chain(outbox, ship=150)  # more than the PLC counted
        # a plain barcode whose text would run as a spreadsheet formula
        await scan(outbox, chain.factory, b"=HYPERLINK(1)", StationRole.OUTBOUND, "scanner:x")
    async with HistoryReader(path) as history:
        report = await lot_report(history, LOT)
    assert report is not None
    assert report["discrepancies"] is True
    rows = list(csv.DictReader(io.StringIO(report_csv(report))))
    assert list(rows[0]) == list(CSV_COLUMNS)
    types = [r["type"] for r in rows]
    assert types == [
        "goods.received",
        "goods.received",
        "batch.started",
        "material.consumed",
        "material.consumed",
        "material.consumed",
        "batch.completed",
        "goods.shipped",
        "reconciliation",
    ]
    completed = rows[6]
    assert (completed["trace_code"], completed["shift"], completed["operator"]) == (
        TRACE_CODE,
        "early",
        "OP-7",
    )
    assert json.loads(completed["detail"])["params"] == {"fill_temp_c": 4.1, "line_speed": 118}
    assert rows[3]["batch"] == LOT
    assert rows[3]["gtin"] == MATERIAL_1
    assert rows[7]["sscc"] == PALLET_OUT
    assert rows[-1]["status"] == "discrepancy"
    assert "150 units shipped but the PLC counted 120" in rows[-1]["detail"]

    # the formula neutraliser, on a report that carries such a cell
    async with Outbox(tmp_path / "f.db") as outbox:
        await write_chain(outbox)
        await scan(
            outbox,
            chain.factory,
            pallet_label(sscc(300), PRODUCT, LOT, 1),
            StationRole.OUTBOUND,
            "=cmd|' /C calc'!A0",
        )
    async with HistoryReader(tmp_path / "f.db") as history:
        report = await lot_report(history, LOT)
    assert report is not None
    sources = [r["source"] for r in csv.DictReader(io.StringIO(report_csv(report)))]
    assert "'=cmd|' /C calc'!A0" in sources


async def test_report_command_writes_each_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_agent_config(tmp_path)
    async with Outbox(tmp_path / "data" / "outbox.db") as outbox:
        await write_chain(outbox)
    for fmt in ("csv", "json", "epcis"):
        out = tmp_path / f"report.{fmt}"
        argv = ["report", "-c", str(config), "--lot", LOT, "--format", fmt, "-o", str(out)]
        assert await asyncio.to_thread(main, argv) == 0
        assert out.stat().st_size > 0
    assert json.loads((tmp_path / "report.epcis").read_text())["type"] == "EPCISDocument"
    assert (tmp_path / "report.csv").read_text().startswith("seq,time,type,")
    assert await asyncio.to_thread(main, ["report", "-c", str(config), "--lot", "NONE"]) == 1
    assert "no history of lot 'NONE'" in capsys.readouterr().err
