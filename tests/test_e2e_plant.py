"""`lineside plant` end to end: three real agents deliver to one PostgreSQL; one trace crosses them.

dock-in receives two material pallets, line-1 (the Modbus filling-line simulator) makes a batch
of them, dock-out ships a pallet of it (`plant_agents`). Then, from the plant store alone:
`plant trace` of the shipped pallet reaches the received material lots through three nodes,
naming the node at each step; `plant report` gives the lot as CSV, JSON, EPCIS 2.0 (valid
against GS1's schema) and FSMA 204; `plant migrate` prints the GRANTs and refuses to downgrade;
an unknown code exits 1.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema  # type: ignore[import-untyped]  # no stubs installed
from plant_agents import PALLET_A, PALLET_B, PALLET_OUT, plant_config, three_nodes
from plant_support import AGENT_ROLE, Plant
from trace_history import MATERIAL_1, PRODUCT

from agent.cli.main import main
from agent.plant.fsma204 import COLUMNS

if TYPE_CHECKING:
    import pytest
    from support import Broker

SCHEMA = Path(__file__).parent / "data" / "epcis-json-schema.json"


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_one_trace_from_a_shipped_pallet_reaches_the_received_material(
    tmp_path: Path, broker: Broker, plant: Plant, capsys: pytest.CaptureFixture[str]
) -> None:
    async with three_nodes(tmp_path, broker, plant) as nodes:
        lot = nodes.lot
    config = plant_config(tmp_path, plant)
    out = tmp_path / "trace.json"
    assert await cli("plant", "trace", PALLET_OUT, "-c", str(config), "--json", "-o", str(out)) == 0
    check_trace(json.loads(out.read_text()), lot)

    assert await cli("plant", "trace", PALLET_OUT, "-c", str(config)) == 0
    table = capsys.readouterr().out
    assert "at plant-a/dock-in scanner:dock-in" in table
    assert "at plant-a/dock-out scanner:dock-out" in table
    assert "plant-a/line-1 plc:filler" in table

    # forward from a received material lot: the batch and its shipment
    assert (
        await cli("plant", "trace", f"(01){MATERIAL_1}(10)MAT-A", "-c", str(config), "--json") == 0
    )
    forward = json.loads(capsys.readouterr().out)
    [batch] = forward["batches"]
    assert batch["lot"] == lot
    assert batch["node"] == "line-1"
    assert [s["node"] for s in batch["shipments"]] == ["dock-out"]

    await check_reports(tmp_path, config, lot)

    assert await cli("plant", "trace", "NO-SUCH-CODE", "-c", str(config)) == 1
    assert "has a history of 'NO-SUCH-CODE'" in capsys.readouterr().err
    assert await cli("plant", "report", "--lot", "NO-LOT", "-c", str(config)) == 1


def check_trace(result: dict[str, Any], lot: str) -> None:
    assert result["matched"] == {"kind": "sscc", "value": PALLET_OUT}
    assert result["nodes"] == ["dock-in", "dock-out", "line-1"]
    [event] = result["events"]
    assert (event["node"], event["type"]) == ("dock-out", "goods.shipped")
    assert event["seq"] >= 1  # the node's own seq, not the plant-wide ordinal
    assert "node_seq" not in event
    [batch] = result["batches"]
    assert (batch["node"], batch["line"], batch["lot"]) == ("line-1", "plc:filler", lot)
    assert batch["trace_code"].startswith(f"(01){PRODUCT}(10){lot}(11)")
    assert (batch["quantity"], batch["shift"], batch["operator"]) == (120, "all-day", "JANE")
    assert set(batch["params"]) == {"fill_temp_c", "line_speed"}
    materials = {m["lot"]: m for m in batch["materials"]}
    assert set(materials) == {"MAT-A", "MAT-B"}
    for name, pallet in (("MAT-A", PALLET_A), ("MAT-B", PALLET_B)):
        [received] = materials[name]["received"]
        assert (received["node"], received["sscc"]) == ("dock-in", pallet)
        assert materials[name]["consumed"][0]["node"] == "line-1"
    [shipment] = batch["shipments"]
    assert (shipment["node"], shipment["sscc"]) == ("dock-out", PALLET_OUT)
    rec = batch["reconciliation"]
    assert (rec["plc_quantity"], rec["units_shipped"], rec["status"]) == (120, 120, "balanced")


async def check_reports(tmp_path: Path, config: Path, lot: str) -> None:
    def report(fmt: str) -> Path:
        return tmp_path / f"lot.{fmt}"

    for fmt in ("csv", "json", "epcis", "fsma204"):
        argv = ["plant", "report", "--lot", lot, "--format", fmt, "-c", str(config)]
        assert await cli(*argv, "-o", str(report(fmt))) == 0, fmt

    document = json.loads(report("epcis").read_text())
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert not errors, errors[:5]
    events = document["epcisBody"]["eventList"]
    assert [e["type"] for e in events] == [
        "ObjectEvent",
        "ObjectEvent",
        "TransformationEvent",
        "ObjectEvent",
    ]
    assert [e["bizLocation"]["id"].rsplit(":", 1)[1] for e in events] == [
        "dock-in",
        "dock-in",
        "line-1",
        "dock-out",
    ]
    assert events[0]["eventTimeZoneOffset"] == "+08:00"  # the plant's time zone

    as_json = json.loads(report("json").read_text())
    assert as_json["nodes"] == ["dock-in", "dock-out", "line-1"]
    assert {e["node"] for e in as_json["events"]} == {"dock-in", "line-1", "dock-out"}

    rows = list(csv.reader(io.StringIO(report("csv").read_text(), newline="")))
    assert {r[rows[0].index("node")] for r in rows[1:] if r[rows[0].index("node")]} == {
        "dock-in",
        "line-1",
        "dock-out",
    }

    fsma = list(csv.DictReader(io.StringIO(report("fsma204").read_text(), newline="")))
    head = report("fsma204").read_text().splitlines()[0].split(",")
    assert tuple(head[:10]) == COLUMNS[:10]
    assert [r["cte"] for r in fsma] == ["receiving", "receiving", "transformation", "shipping"]
    receiving, _, made, shipping = fsma
    assert (receiving["traceability_lot_code"], receiving["location"]) == (
        "MAT-A",
        "plant-a/dock-in",
    )
    assert (receiving["quantity"], receiving["unit_of_measure"]) == ("40", "each")
    assert (made["traceability_lot_code"], made["quantity"], made["gtin"]) == (lot, "120", PRODUCT)
    assert made["location"] == "plant-a/line-1"
    assert f"{MATERIAL_1}|MAT-A" in made["input_lots"]
    assert (shipping["traceability_lot_code"], shipping["sscc"]) == (lot, PALLET_OUT)
    assert shipping["location"] == "plant-a/dock-out"
    assert receiving["reference_document"] == ""  # not captured by the plant (documented)
    assert made["time"].endswith("+08:00")


async def test_migrate_prints_the_grants_and_refuses_to_downgrade(
    tmp_path: Path, plant: Plant, capsys: pytest.CaptureFixture[str]
) -> None:
    config = plant_config(tmp_path, plant)
    argv = ["plant", "migrate", "-c", str(config), "--agent-role", AGENT_ROLE]
    assert await cli(*argv) == 0
    out = capsys.readouterr().out
    assert "(no change)" in out
    assert f'GRANT SELECT, INSERT ON lineside.events TO "{AGENT_ROLE}";' in out
    assert f'GRANT USAGE ON SCHEMA lineside TO "{AGENT_ROLE}";' in out
    plant.cluster.sql("INSERT INTO lineside.schema_version (version, description) VALUES (99, 'x')")
    try:
        assert await cli(*argv) == 1
        assert "newer than this Lineside's" in capsys.readouterr().err
    finally:
        plant.cluster.sql("DELETE FROM lineside.schema_version WHERE version = 99")


async def test_a_bad_plant_config_names_the_key(
    tmp_path: Path, plant: Plant, capsys: pytest.CaptureFixture[str]
) -> None:
    config = plant_config(tmp_path, plant, timezone_typo="x")
    assert await cli("plant", "trace", "X", "-c", str(config)) == 2
    assert "plant.timezone_typo" in capsys.readouterr().err
    wrong = plant_config(tmp_path, plant)
    wrong.write_text(wrong.read_text().replace("lineside_admin@", "nobody@"))
    assert await cli("plant", "trace", "X", "-c", str(wrong)) == 1
    assert 'password authentication failed for user "nobody"' in capsys.readouterr().err
