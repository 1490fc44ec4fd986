"""The plant view follows aggregation across nodes: a pallet packed at dock-out, three real agents.

dock-in receives the material, line-1 makes a batch, dock-out packs its trace code onto a new
SSCC at a packing station and ships that pallet (`plant_agents.three_nodes(packing=True)`).
From the plant store alone: `plant trace SSCC` lists the pallet's child with its batch and
reaches the received material lots; forward from a material lot, and from the batch's trace
code, the batch names the SSCC it was packed into; reconciliation counts the unit packed; the
lot's EPCIS report carries the AggregationEvent (valid against GS1's schema).
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import jsonschema  # type: ignore[import-untyped]  # no stubs installed
import psycopg
from plant_agents import PALLET_A, PALLET_B, plant_config, three_nodes
from test_e2e_plant import SCHEMA
from trace_history import MATERIAL_1, PRODUCT

from agent.cli.main import main
from agent.plant.reconciliation import plant_reconciliation

if TYPE_CHECKING:
    from pathlib import Path

    from plant_support import Plant
    from support import Broker


async def plant_json(config: Path, *argv: str) -> dict[str, Any]:
    out = config.parent / "answer.json"
    assert await asyncio.to_thread(main, [*argv, "-c", str(config), "-o", str(out)]) == 0, argv
    return json.loads(out.read_text())  # type: ignore[no-any-return]


async def test_a_pallet_packed_at_dock_out_traces_to_its_batch_and_materials(
    tmp_path: Path, broker: Broker, plant: Plant
) -> None:
    async with three_nodes(tmp_path, broker, plant, packing=True) as nodes:
        lot, sscc, code = nodes.lot, nodes.sscc, nodes.trace_code
    config = plant_config(tmp_path, plant)

    pallet = await plant_json(config, "plant", "trace", sscc, "--json")
    assert pallet["matched"] == {"kind": "sscc", "value": sscc}
    assert pallet["nodes"] == ["dock-in", "dock-out", "line-1"]
    [view] = pallet["pallets"]
    [child] = view["children"]
    assert (child["gtin"], child["lot"]) == (PRODUCT, lot)
    assert child["batches"] == [{"trace_code": code, "lot": lot}]
    [batch] = pallet["batches"]
    assert (batch["node"], batch["trace_code"], batch["packed_into"]) == ("line-1", code, [sscc])
    received = {m["lot"]: m["received"][0] for m in batch["materials"]}
    assert {lot: (r["node"], r["sscc"]) for lot, r in received.items()} == {
        "MAT-A": ("dock-in", PALLET_A),
        "MAT-B": ("dock-in", PALLET_B),
    }
    [shipment] = batch["shipments"]
    assert (shipment["node"], shipment["sscc"]) == ("dock-out", sscc)
    assert batch["reconciliation"]["units_packed"] == 1

    # forward: from a received material lot, and from the batch's code, to the SSCC
    for query in (f"(01){MATERIAL_1}(10)MAT-A", code):
        forward = await plant_json(config, "plant", "trace", query, "--json")
        [batch] = forward["batches"]
        assert (batch["lot"], batch["packed_into"]) == (lot, [sscc]), query

    async with await psycopg.AsyncConnection.connect(plant.cluster.admin_conninfo()) as conn:
        [numbers] = await plant_reconciliation(conn, "plant-a")
    assert (numbers["lot"], numbers["units_packed"], numbers["units_shipped"]) == (lot, 1, 120)

    document = await plant_json(config, "plant", "report", "--lot", lot, "--format", "epcis")
    schema = json.loads(SCHEMA.read_text())
    errors = list(jsonschema.validators.validator_for(schema)(schema).iter_errors(document))
    assert not errors, errors[:3]
    [packed] = [e for e in document["epcisBody"]["eventList"] if e["type"] == "AggregationEvent"]
    assert (packed["action"], packed["parentID"].rsplit("/", 1)[1]) == ("ADD", sscc)
    assert packed["bizStep"] == "packing"
