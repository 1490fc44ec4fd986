"""`lineside demo` as a user runs it: it starts, produces batches and scans, and stops on Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from typing import TYPE_CHECKING, Any

import pytest
from biip.gs1_messages import GS1Message
from support import Broker, subscriber

if TYPE_CHECKING:
    from pathlib import Path

    from support import Collected

NODE = "lineside/v1/demo-plant/line-1"
SCAN_TYPES = ("goods.received", "material.consumed", "goods.shipped")
PACKING_TYPES = ("label.printed", "aggregation.completed")  # labels printed, pallets built
HID = "scanner:dock-in-hid"  # the keyboard-wedge scanner, typing into a FIFO


def of_type(got: Collected, type_: str) -> list[dict[str, Any]]:
    return got.payloads(lambda t: t == f"{NODE}/{type_}")


async def test_demo_runs_a_line_and_stops_cleanly(tmp_path: Path) -> None:
    stderr = (tmp_path / "demo.log").open("wb")
    demo = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "agent.cli", "demo", "--single", "--dir", str(tmp_path / "demo")),
        *("--listen", "127.0.0.1:0", "--rate", "10", "--batch-seconds", "1", "--quiet"),
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )
    stderr.close()
    assert demo.stdout is not None
    try:
        header: list[str] = []
        async with asyncio.timeout(30):
            while not header or not header[-1].startswith("Ctrl-C"):
                line = await demo.stdout.readline()
                assert line, f"demo ended early:\n{(tmp_path / 'demo.log').read_text()[-3000:]}"
                header.append(line.decode().strip())
        text = "\n".join(header)
        found = re.search(r"broker:\s+mqtt://([\d.]+):(\d+)", text)
        assert found, text
        assert re.search(r"status page:\s+http://127\.0\.0\.1:\d+/", text), text
        hid_line = r"HID scanner:\s+dock-in-hid, typing into /\S+/dock-in-hid$"
        assert re.search(hid_line, text, re.MULTILINE), text
        broker = Broker(tmp_path, port=int(found[2]), host=found[1])
        async with subscriber(broker, f"{NODE}/#") as got:
            await got.wait_for(
                lambda g: (
                    len(of_type(g, "batch.completed")) >= 2
                    and all(of_type(g, t) for t in SCAN_TYPES + PACKING_TYPES)
                    and any(e["source"] == HID for e in of_type(g, "goods.received"))
                ),
                timeout=30,
            )
        demo.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            rest = await demo.stdout.read()
            code = await demo.wait()
    finally:
        if demo.returncode is None:
            demo.kill()
            with contextlib.suppress(ProcessLookupError):
                await demo.wait()
    assert code == 0
    assert "Lineside demo stopped." in rest.decode()
    batches = [e["data"] for e in of_type(got, "batch.completed")]
    for data in batches:
        message = GS1Message.parse_hri(data["trace_code"])
        assert all(es.gtin_error is None for es in message.element_strings)
        assert data["quantity"] == 4
    assert len({d["serial"] for d in batches}) == len(batches)
    assert batches[-1]["work_order"] == "WO-DEMO-1"  # the MES's work order reached the line
    consumed = [e["data"] for e in of_type(got, "material.consumed")]
    assert all(c["batch"] is not None for c in consumed), "line scans go into the open lot"
    by_hid = [e["data"] for e in of_type(got, "goods.received") if e["source"] == HID]
    assert all(d["gs1"]["10"].startswith("M") and "21" in d["gs1"] for d in by_hid), by_hid
    assert not list((tmp_path / "demo" / "dev").glob("dock-in-hid*")), "the FIFO is left behind"
    # the dock ships the pallets its packing station built, and the printer printed the labels
    packed = {e["data"]["sscc"] for e in of_type(got, "aggregation.completed")}
    shipped = {e["data"].get("sscc") for e in of_type(got, "goods.shipped")}
    assert shipped <= packed, (shipped, packed)
    kinds = {e["data"]["kind"] for e in of_type(got, "label.printed")}
    assert "batch" in kinds, kinds
    assert list((tmp_path / "demo" / "labels").glob("job-*.zpl"))


SHOWN = [
    ("opcua", "OPC UA opc.tcp://"),
    ("s7", "S7 127.0.0.1:"),
    ("enip", "EtherNet/IP 127.0.0.1:"),
]


@pytest.mark.parametrize(("plc", "shown"), SHOWN)
async def test_demo_on_each_plc_protocol_completes_batches(
    tmp_path: Path, plc: str, shown: str
) -> None:
    log = (tmp_path / "demo.log").open("wb")
    demo = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "agent.cli", "demo", "--single", "--dir", str(tmp_path / "demo")),
        *("--listen", "127.0.0.1:0", "--batch-seconds", "1", "--quiet", "--plc", plc),
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    log.close()
    assert demo.stdout is not None
    try:
        header: list[str] = []
        async with asyncio.timeout(30):
            while not header or not header[-1].startswith("Ctrl-C"):
                line = await demo.stdout.readline()
                assert line, f"demo ended early:\n{(tmp_path / 'demo.log').read_text()[-3000:]}"
                header.append(line.decode().strip())
        text = "\n".join(header)
        assert re.search(rf"PLC:\s+{re.escape(shown)}", text), text
        found = re.search(r"broker:\s+mqtt://([\d.]+):(\d+)", text)
        assert found, text
        broker = Broker(tmp_path, port=int(found[2]), host=found[1])
        async with subscriber(broker, f"{NODE}/#") as got:
            await got.wait_for(lambda g: len(of_type(g, "batch.completed")) >= 2, timeout=30)
        demo.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            rest = await demo.stdout.read()
            code = await demo.wait()
    finally:
        if demo.returncode is None:
            demo.kill()
            with contextlib.suppress(ProcessLookupError):
                await demo.wait()
    assert code == 0, (tmp_path / "demo.log").read_text()[-3000:]
    assert "Lineside demo stopped." in rest.decode()
    batches = [e["data"] for e in of_type(got, "batch.completed")]
    assert all(d["quantity"] == 4 for d in batches)
    assert all(3.5 < d["params"]["fill_temp_c"] < 4.5 for d in batches)
    assert len({d["serial"] for d in batches}) == len(batches)
    config = (tmp_path / "demo" / "lineside.toml").read_text()
    assert f'protocol = "{plc}"' in config
