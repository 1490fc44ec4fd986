"""Trace and reports follow aggregation, end to end: a PLC's batches packed at a station.

The filling-line simulator completes two batches; their trace codes are scanned onto a pallet
at a packing station of the same agent. Then: `lineside trace SSCC` lists the children and
their batches, a batch's trace lists the SSCC it went into, the lot's EPCIS report carries the
AggregationEvents (ADD, then DELETE for a child taken off) and is valid against GS1's schema,
and reconciliation counts the units packed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import jsonschema  # type: ignore[import-untyped]  # no stubs installed
import pytest
from agent_harness import running_agent, write_config
from support import Pty, subscriber
from test_e2e_batches import complete, completed, plc_section, tcp
from test_epcis import SCHEMA
from test_packing import ACK, NODE, of_type, scan

from agent.history.epcis import epcis_document
from agent.history.reports import report_file
from agent.history.trace import trace_file
from agent.history.trace_format import render_table
from drivers.simulators.modbus_plc import FillingLineSimulator

if TYPE_CHECKING:
    from pathlib import Path

    from support import Broker
    from test_epcis import Validator


@pytest.fixture(scope="module")
def validator() -> Validator:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


async def test_trace_reports_and_epcis_follow_the_pallet(
    tmp_path: Path, broker: Broker, pty: Pty, validator: Validator
) -> None:
    async with FillingLineSimulator(port=0, auto=False) as sim:
        extra = '[packing]\ncompany_prefix = "0950110"\n' + plc_section(tcp(sim), poll_ms=20)
        config = write_config(tmp_path, broker, {"pack-1": ("packing", pty)}, extra=extra)
        async with subscriber(broker, f"{NODE}/#") as got, running_agent(config):
            await complete(sim, 10)
            await complete(sim, 12)
            await got.wait_for(lambda g: len(completed(g)) == 2)
            codes = [b["data"]["trace_code"] for b in completed(got)]
            assert await scan(pty, b"PACK:NEW") == ACK
            for code in codes:
                assert await scan(pty, code.encode()) == ACK
            assert await scan(pty, b"PACK:CLOSE") == ACK
            assert await scan(pty, b"PACK:REMOVE") == ACK
            assert await scan(pty, codes[1].encode()) == ACK
            await got.wait_for(lambda g: len(of_type(g, "aggregation.changed")) == 1)
            sscc = of_type(got, "aggregation.completed")[0]["data"]["sscc"]
    batches = completed(got)
    db = tmp_path / "data" / "outbox.db"

    pallet = await trace_file(db, sscc)
    assert pallet is not None
    assert pallet["matched"] == {"kind": "sscc", "value": sscc}
    (view,) = pallet["pallets"]
    assert [c["serial"] for c in view["children"]] == [batches[0]["data"]["serial"]]
    assert view["children"][0]["batches"] == [
        {"trace_code": codes[0], "lot": batches[0]["data"]["lot"]}
    ]
    assert [b["trace_code"] for b in pallet["batches"]] == [codes[0]]
    table = render_table(pallet)
    assert f"Pallet SSCC {sscc}" in table
    assert f"from batch {codes[0]}" in table

    first = await trace_file(db, codes[0])
    assert first is not None
    assert first["batches"][0]["packed_into"] == [sscc]
    assert first["batches"][0]["reconciliation"]["units_packed"] == 1
    second = await trace_file(db, codes[1])
    assert second is not None
    assert second["batches"][0]["packed_into"] == []  # taken off again
    assert second["batches"][0]["reconciliation"]["units_packed"] == 0

    report = await report_file(db, batches[1]["data"]["lot"])
    assert report is not None
    document = epcis_document(report["events"], timezone="Asia/Shanghai")
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert not errors, errors[:5]
    aggregations = [
        e for e in document["epcisBody"]["eventList"] if e["type"] == "AggregationEvent"
    ]
    assert [(a["action"], a["bizStep"]) for a in aggregations] == [
        ("ADD", "packing"),
        ("DELETE", "packing"),
    ]
    link = f"https://id.gs1.org/00/{sscc}"
    assert {a["parentID"] for a in aggregations} == {link}
    gtin = batches[0]["data"]["gtin"]
    serials = [b["data"]["serial"] for b in batches]
    assert aggregations[0]["childEPCs"] == [f"https://id.gs1.org/01/{gtin}/21/{s}" for s in serials]
    assert aggregations[1]["childEPCs"] == [f"https://id.gs1.org/01/{gtin}/21/{serials[1]}"]


def test_reconciliation_counts_units_packed() -> None:
    from agent.history.reconcile import reconcile  # noqa: PLC0415

    batch = {
        "seq": 1,
        "type": "batch.completed",
        "data": {"gtin": "G", "lot": "L", "serial": "1", "trace_code": "c", "quantity": 5},
    }
    child = {"kind": "item", "gtin": "G", "serial": "1", "lot": "L"}
    other = {"kind": "item", "gtin": "G", "serial": "9", "lot": "L"}
    packing = [
        {
            "seq": 2,
            "type": "aggregation.completed",
            "data": {"sscc": "S", "children": [child, other], "count": 2},
        },
        {"seq": 3, "type": "aggregation.changed", "data": {"sscc": "S", "removed": [other]}},
        {
            "seq": 4,
            "type": "aggregation.completed",
            "data": {"sscc": "T", "children": [child], "count": 1},
        },
    ]
    assert reconcile([batch], [], packing[:1]).units_packed == 2
    assert reconcile([batch], [], packing).units_packed == 1  # once, on whichever pallet
    assert json.loads(json.dumps(reconcile([batch], [], packing).as_data()))["units_packed"] == 1
