"""Batch labels end to end: the filling-line simulator, the agent, a simulated printer, mosquitto.

Each batch the PLC completes comes out of the printer as one label carrying that batch's trace
code (read back from the ZPL's DataMatrix and checked with biip against `batch.completed`), and
`label.printed` reaches the broker; a printer out of paper raises an alarm while batches keep
being stamped and delivered, and the labels come out once paper is back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent_harness import running_agent, write_config
from biip.gs1_messages import GS1Message
from support import subscriber, wait_until
from test_e2e_batches import NODE, complete, completed, plc_section, tcp
from zpl_fields import datamatrix_content, read_fields

from drivers.printers.zpl_sim import ZplPrinterSimulator
from drivers.simulators.modbus_plc import FillingLineSimulator

if TYPE_CHECKING:
    from pathlib import Path

    from support import Broker, Collected


def labels(got: Collected, kind: str) -> list[dict[str, Any]]:
    unique = {e["id"]: e for e in got.payloads(lambda t: t == f"{NODE}/{kind}")}
    return sorted(unique.values(), key=lambda e: int(e["seq"]))


def printed_code(job: bytes) -> str:
    (matrix,) = [f for f in read_fields(job) if f.barcode == "BX"]
    _, content = datamatrix_content(matrix)
    return GS1Message.parse(content.decode()).as_hri()


async def test_each_batch_prints_its_label_and_paper_out_never_stops_the_line(
    tmp_path: Path, broker: Broker
) -> None:
    async with (
        FillingLineSimulator(port=0, auto=False) as sim,
        ZplPrinterSimulator() as printer,
    ):
        section = plc_section(tcp(sim), poll_ms=20)
        section += "\n".join(
            [
                "[[printers]]",
                'id = "labeller-1"',
                'kind = "zpl"',
                f'url = "{printer.url}"',
                "status_timeout_ms = 500",
                "connect_attempts = 1",
                "",
            ]
        )
        config = write_config(tmp_path, broker, {}, extra=section)
        async with subscriber(broker, f"{NODE}/#") as got, running_agent(config) as agent:
            (label_printer,) = agent.printers
            await wait_until(lambda: label_printer.book.cursor() is not None, what="printer up")
            await complete(sim, 10)
            await wait_until(lambda: len(labels(got, "label.printed")) == 1, what="1 label")
            printer.paper_out = True
            await complete(sim, 11)
            await wait_until(lambda: len(completed(got)) == 2, what="batch 2 delivered")
            await wait_until(lambda: len(labels(got, "label.failed")) == 1, what="label.failed")
            assert any(a.code == "printer.fault" for a in agent.alarms.active())
            status = agent.view.status()
            assert status.printers[0].reason == "paper out"
            printer.paper_out = False
            await wait_until(lambda: len(labels(got, "label.printed")) == 2, what="2 labels")
        batches = completed(got)
        printed = labels(got, "label.printed")
        assert [p["data"]["trace_code"] for p in printed] == [
            b["data"]["trace_code"] for b in batches
        ]
        assert [printed_code(job) for job in printer.jobs] == [
            b["data"]["trace_code"] for b in batches
        ]
        assert labels(got, "label.failed")[0]["data"]["reason"] == "paper out"
