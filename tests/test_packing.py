"""Packing stations end to end: a pty scanner, the agent, a simulated printer, a real mosquitto.

A pallet is built as at a dock: `PACK:NEW` (its SSCC label printed and read back with biip),
items and a child SSCC added, the SSCC scanned again to close it (`aggregation.completed`), a
child removed (`aggregation.changed`); every wrong scan is refused with its reason (NAK and
`scan.rejected`): a child packed already, an unknown code, an SSCC with a wrong check digit.
The station's reads are the status page's recent scans and its refusals are counted in
`lineside_scans_rejected`, as any scanner's; the printer is one of `/api/status`'s devices, its
link a `device.status` event, a lost link an alarm. Across kill -9, an SSCC is never given
twice and an open pallet stays open.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx
from agent_harness import AgentProcess, running_agent, write_config
from biip.sscc import Sscc
from support import Pty, subscriber, wait_until
from zpl_fields import code128_content, read_fields

from drivers.printers.zpl_sim import ZplPrinterSimulator

if TYPE_CHECKING:
    from pathlib import Path

    from support import Broker, Collected

    from agent.runtime.agent import Agent

NODE = "lineside/v1/plant-a/line-3"
ACK, NAK = b"\x06", b"\x15"
ITEM_A = b"]d2010950110153000321A1"
ITEM_B = b"]d2010950110153000310L1\x1d21B2"


def packing_config(tmp_path: Path, broker: Broker, pty: Pty, printer_url: str | None) -> Path:
    extra = ""
    if printer_url is not None:  # right after the scanner's table: its own `printer` key
        extra = 'printer = "labeller-1"\n'
    extra += '[packing]\ncompany_prefix = "0950110"\nextension_digit = 3\n'
    if printer_url is not None:
        extra += f'[[printers]]\nid = "labeller-1"\nurl = "{printer_url}"\nprint_on = ""\n'
    return write_config(tmp_path, broker, {"pack-1": ("packing", pty)}, extra=extra)


async def scan(pty: Pty, data: bytes) -> bytes:
    """Send one read and return the scanner's answer (good-read or NAK)."""
    pty.write(data + b"\r\n")
    for _ in range(1000):
        answer = pty.read_available()
        if answer:
            return answer
        await asyncio.sleep(0.01)
    raise AssertionError(f"no answer to {data!r}")


def of_type(got: Collected, kind: str) -> list[dict[str, Any]]:
    unique = {e["id"]: e for e in got.payloads(lambda t: t == f"{NODE}/{kind}")}
    return sorted(unique.values(), key=lambda e: int(e["seq"]))


def printed_sscc(job: bytes) -> str:
    (bar,) = [f for f in read_fields(job) if f.barcode == "BC"]
    gs1, content = code128_content(bar)
    assert gs1
    assert content.startswith(b"00")
    return Sscc.parse(content[2:].decode()).value


async def test_a_pallet_is_built_closed_changed_and_every_wrong_scan_refused(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    async with ZplPrinterSimulator() as printer:
        config = packing_config(tmp_path, broker, pty, printer.url)
        async with subscriber(broker, f"{NODE}/#") as got, running_agent(config) as agent:
            assert await scan(pty, b"PACK:NEW") == ACK
            (job,) = await printer.wait_for_jobs(1)
            first = printed_sscc(job)
            assert first.startswith("30950110")  # extension digit, company prefix
            assert await scan(pty, ITEM_A) == ACK
            assert await scan(pty, ITEM_A) == NAK  # on this pallet already
            assert await scan(pty, ITEM_B) == ACK
            assert await scan(pty, b"HELLO") == NAK
            assert await scan(pty, b"]C100095011015300000004") == NAK  # wrong check digit
            assert await scan(pty, b"]C100" + first.encode()) == ACK  # scanned again: closed
            await got.wait_for(lambda g: len(of_type(g, "aggregation.completed")) == 1)

            assert await scan(pty, b"PACK:NEW") == ACK
            (_, job) = await printer.wait_for_jobs(2)
            second = printed_sscc(job)
            assert second != first
            assert await scan(pty, ITEM_A) == NAK  # packed in the first pallet
            assert await scan(pty, b"]C100" + first.encode()) == ACK  # a pallet onto a pallet
            assert await scan(pty, b"PACK:CLOSE") == ACK
            assert await scan(pty, b"PACK:CLOSE") == NAK  # nothing open
            assert await scan(pty, b"PACK:REMOVE") == ACK
            assert await scan(pty, ITEM_A) == ACK
            assert await scan(pty, b"PACK:REMOVE") == ACK
            assert await scan(pty, ITEM_A) == NAK  # packed nowhere now
            await got.wait_for(lambda g: len(of_type(g, "aggregation.changed")) == 1)
            await got.wait_for(lambda g: len(of_type(g, "scan.rejected")) == 6)
            await got.wait_for(lambda g: len(of_type(g, "label.printed")) == 2)
            await check_status_and_printer_link(agent, printer, pty, got)

    done = [e["data"] for e in of_type(got, "aggregation.completed")]
    assert [d["sscc"] for d in done] == [first, second]
    assert [d["count"] for d in done] == [2, 1]
    items = done[0]["children"]
    assert [(c["kind"], c["gtin"], c["serial"]) for c in items] == [
        ("item", "09501101530003", "A1"),
        ("item", "09501101530003", "B2"),
    ]
    assert items[1]["lot"] == "L1"
    assert items[0]["digital_link"] == "https://id.gs1.org/01/09501101530003/21/A1"
    assert done[1]["children"][0]["sscc"] == first
    (changed,) = [e["data"] for e in of_type(got, "aggregation.changed")]
    assert changed["sscc"] == first
    assert [c["serial"] for c in changed["removed"]] == ["A1"]
    reasons = [e["data"]["reason_code"] for e in of_type(got, "scan.rejected")]
    assert reasons == [
        "pack.already_here",
        "pack.unknown_code",
        "gs1.check_digit",
        "pack.packed_elsewhere",
        "pack.nothing_open",
        "pack.not_packed",
    ]
    labels = [e["data"] for e in of_type(got, "label.printed")]
    assert [(lb["kind"], lb["sscc"]) for lb in labels] == [("sscc", first), ("sscc", second)]


async def check_status_and_printer_link(
    agent: Agent, printer: ZplPrinterSimulator, pty: Pty, got: Collected
) -> None:
    """Recent scans, the rejected-scans metric, the printer among the devices, then unplugged."""
    assert agent.status_url is not None
    async with httpx.AsyncClient(base_url=agent.status_url, trust_env=False) as http:
        status = (await http.get("/api/status")).json()
        scans = [s for s in status["recent_scans"] if s["device"] == "pack-1"]
        assert len(scans) == 16  # every read of this test, accepted or refused
        assert [s["type"] for s in scans[:2]] == ["scan.rejected", "packing"]  # newest first
        assert scans[0]["reason_code"] == "pack.not_packed"
        metrics = (await http.get("/metrics")).text
        assert 'lineside_scans_rejected_total{device="pack-1"} 6.0' in metrics
        devices = {d["id"]: d for d in status["devices"]}
        assert (devices["labeller-1"]["kind"], devices["labeller-1"]["role"]) == ("printer", "zpl")
        assert devices["labeller-1"]["connected"]
        assert 'lineside_device_up{device="labeller-1"} 1.0' in (await http.get("/metrics")).text

        def printer_links(g: Collected) -> list[bool]:
            return [
                e["data"]["connected"]
                for e in of_type(g, "device.status")
                if e["data"]["device"] == "labeller-1"
            ]

        await got.wait_for(lambda g: printer_links(g) == [True])
        await printer.stop()
        assert await scan(pty, b"PACK:NEW") == ACK  # its label cannot print: the link is lost
        await got.wait_for(lambda g: printer_links(g) == [True, False])

        async def alarmed() -> bool:
            alarms = (await http.get("/api/status")).json()["alarms"]
            return any(a["id"] == "device:labeller-1" for a in alarms)

        for _ in range(150):  # the monitor's DEVICE_ALARM_AFTER_S, and a margin
            if await alarmed():
                break
            await asyncio.sleep(0.1)
        assert await alarmed()


async def test_an_sscc_is_never_given_twice_across_kill_9(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    config = packing_config(tmp_path, broker, pty, None)
    proc = AgentProcess(config, tmp_path / "agent.log")
    seen: list[str] = []
    starts = 0

    async def start() -> None:
        nonlocal starts
        proc.start()
        starts += 1
        await wait_until(
            lambda: proc.log().count("scanner pack-1: connected") >= starts, what="agent up"
        )

    async with subscriber(broker, f"{NODE}/#") as got:
        try:
            for i in range(3):
                await start()
                assert await scan(pty, b"PACK:NEW") == ACK
                proc.kill()  # the SSCC was committed before the good-read
                await start()
                assert await scan(pty, b"PACK:NEW") == NAK  # still open after the kill
                assert await scan(pty, b"]d20109501101530003" + f"21K{i}".encode()) == ACK
                assert await scan(pty, b"PACK:CLOSE") == ACK
                await got.wait_for(lambda g, n=i + 1: len(of_type(g, "aggregation.completed")) == n)
                assert proc.terminate() == 0
        finally:
            if proc.process is not None:
                proc.kill()
    seen = [e["data"]["sscc"] for e in of_type(got, "aggregation.completed")]
    assert len(set(seen)) == 3
    assert [int(s[8:17]) for s in seen] == [1, 2, 3]  # serial references in order
