"""Trace end to end on real parts: pty scanners, the pymodbus filling-line PLC, mosquitto.

Receive two material lots at the dock, badge in and consume them at the line, let the PLC
complete the batch, ship a pallet of it; then trace from the shipped SSCC (read-only while
the agent runs, and over HTTP) and export the lot as EPCIS, validated by GS1's schema.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jsonschema  # type: ignore[import-untyped]  # no stubs installed
import pytest
from agent_harness import running_agent, write_config
from playwright.async_api import expect
from support import CHROMIUM, Pty, wait_until
from test_web_browser import browsing
from trace_history import MATERIAL_1, MATERIAL_2, PRODUCT, carton_label, pallet_label

from agent.cli.main import main
from agent.cli.trace_bench import sscc
from agent.history.trace import trace_file
from drivers.simulators.modbus_plc import FillingLineSimulator

if TYPE_CHECKING:
    from support import Broker

SCHEMA = Path(__file__).parent / "data" / "epcis-json-schema.json"
PALLET_A, PALLET_B, PALLET_OUT = sscc(11), sscc(12), sscc(21)


def plc_config(port: int) -> str:
    return f"""
[line]
gtin = "{PRODUCT}"
operator_prefix = "OP:"

[[shifts]]
name = "all-day"
start = "00:00"
end = "00:00"

[[plcs]]
id = "filler"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {port}
poll_ms = 50

[plcs.batch]
trigger = "coil:0"
quantity = "holding:100:uint32"
ack = "coil:1"
write_code_to = "holding:200:string:64"

[plcs.params]
fill_temp_c = "holding:110:float32"
line_speed = "holding:112:uint16"
"""


async def test_trace_from_a_shipped_pallet_back_to_materials(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    line, dock_out = Pty(tmp_path / "line"), Pty(tmp_path / "dock-out")
    line.plug()
    dock_out.plug()
    try:
        async with FillingLineSimulator(port=0, auto=False, seed=3) as sim:
            config = write_config(
                tmp_path,
                broker,
                {
                    "dock-in": ("inbound", pty),
                    "line-1": ("line", line),
                    "dock-out": ("outbound", dock_out),
                },
                extra=plc_config(sim.port),
            )
            async with running_agent(config) as agent:
                tracker = agent.batch_lines.named(None)
                pty.write(pallet_label(PALLET_A, MATERIAL_1, "MAT-A", 40) + b"\r\n")
                pty.write(pallet_label(PALLET_B, MATERIAL_2, "MAT-B", 40) + b"\r\n")
                line.write(b"OP:JANE\r\n")
                await wait_until(lambda: tracker.operator == "JANE", what="operator badge")
                line.write(carton_label(MATERIAL_1, "MAT-A", "C1") + b"\r\n")
                line.write(carton_label(MATERIAL_2, "MAT-B", "C2") + b"\r\n")
                await wait_until(
                    lambda: tracker.open is not None and len(tracker.open.materials) == 2,
                    what="two materials consumed",
                )
                await sim.complete_batch(quantity=120)
                await wait_until(lambda: tracker.completed == 1, what="batch completed")
                lot = str(tracker.recent[0]["lot"])
                dock_out.write(pallet_label(PALLET_OUT, PRODUCT, lot, 120) + b"\r\n")
                await wait_until(lambda: agent.reconciler.emitted == 1, what="reconciled")

                # read-only, while the agent is running
                result = await trace_file(agent.config.agent.data_dir / "outbox.db", PALLET_OUT)
                assert result is not None
                check_trace(result, lot)
                assert agent.status_url is not None
                async with httpx.AsyncClient(base_url=agent.status_url) as client:
                    response = await client.get(f"/api/trace/{PALLET_OUT}")
                assert response.status_code == 200, response.text
                check_trace(response.json(), lot)
                assert not [a for a in agent.alarms.active() if a.kind == "reconcile"]
    finally:
        line.unplug()
        dock_out.unplug()

    epcis = tmp_path / "lot.epcis.json"
    argv = ["report", "-c", str(config), "--lot", lot, "--format", "epcis", "-o", str(epcis)]
    assert await asyncio.to_thread(main, argv) == 0
    document = json.loads(epcis.read_text())
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert not errors, errors[:5]
    types = [e["type"] for e in document["epcisBody"]["eventList"]]
    assert types == ["ObjectEvent", "ObjectEvent", "TransformationEvent", "ObjectEvent"]


def check_trace(result: dict[str, Any], lot: str) -> None:
    assert result["matched"] == {"kind": "sscc", "value": PALLET_OUT}
    [batch] = result["batches"]
    assert batch["lot"] == lot
    assert batch["trace_code"].startswith(f"(01){PRODUCT}(10){lot}(11)")
    assert batch["quantity"] == 120
    assert set(batch["params"]) == {"fill_temp_c", "line_speed"}
    assert (batch["shift"], batch["operator"]) == ("all-day", "JANE")
    materials = {m["lot"]: m for m in batch["materials"]}
    assert set(materials) == {"MAT-A", "MAT-B"}
    assert materials["MAT-A"]["received"][0]["sscc"] == PALLET_A
    assert materials["MAT-B"]["received"][0]["sscc"] == PALLET_B
    assert materials["MAT-A"]["received"][0]["source"] == "scanner:dock-in"
    assert batch["shipments"][0]["sscc"] == PALLET_OUT
    assert batch["reconciliation"]["status"] == "balanced"


@pytest.mark.browser
async def test_trace_page_shows_the_chain_escaped(tmp_path: Path) -> None:
    if not await asyncio.to_thread(Path(CHROMIUM).exists):
        pytest.skip(f"{CHROMIUM} is not installed")
    img = '<img src=x onerror="window.__xss=1">'
    chain = {
        "query": "L1",
        "matched": {"kind": "lot", "value": "L1"},
        "events": [],
        "batches": [
            {
                "status": "completed",
                "trace_code": f"(01){PRODUCT}(10)L1(11)261124(21)000001",
                "gtin": PRODUCT,
                "lot": "L1",
                "serial": "000001",
                "operator": img,
                "shift": "early",
                "params": {"fill_temp_c": 4.1},
                "materials": [{"gtin": MATERIAL_1, "lot": "MAT-A", "consumed": [], "received": []}],
                "shipments": [],
                "packed_into": ["095011010000000017"],
                "reconciliation": {
                    "status": "discrepancy",
                    "plc_quantity": 10,
                    "units_shipped": 12,
                    "discrepancies": ["12 units shipped but the PLC counted 10"],
                },
            }
        ],
        "pallets": [
            {
                "sscc": "095011010000000017",
                "count": 1,
                "children": [
                    {
                        "kind": "item",
                        "gtin": PRODUCT,
                        "serial": img,
                        "batches": [{"trace_code": "(01)PALLET-CHILD-BATCH", "lot": "L1"}],
                    }
                ],
            }
        ],
    }
    async with browsing(tmp_path) as b:
        b.view.traces["L1"] = chain
        await b.page.fill("#trace-form input[name=code]", "L1")
        await b.page.click("#trace-go")
        result = b.page.locator("#trace-result")
        await expect(result).to_contain_text(f"(01){PRODUCT}(10)L1")
        await expect(result).to_contain_text(img)
        await expect(result).to_contain_text("MAT-A")
        await expect(result).to_contain_text("12 units shipped but the PLC counted 10")
        await expect(result).to_contain_text("Pallet SSCC 095011010000000017")
        await expect(result).to_contain_text("from batch (01)PALLET-CHILD-BATCH")
        await expect(result).to_contain_text("Packed into095011010000000017")
        await b.page.fill("#trace-form input[name=code]", "UNKNOWN")
        await b.page.click("#trace-go")
        await expect(result).to_contain_text("No history of this code")
        assert await b.page.locator("#trace-result img").count() == 0
        assert await b.page.evaluate("typeof window.__xss") == "undefined"
        assert b.csp_violations() == []
        assert b.page_errors == []
