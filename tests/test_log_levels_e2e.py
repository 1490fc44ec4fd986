"""Barcode contents reach the log at DEBUG only: a REAL agent at INFO level, real scans.

A line scanner and an outbound dock (ptys), the PLC simulator completing a batch, mosquitto,
and an HTTP destination (WMS stand-in) that refuses the scans with answers quoting them. Good
reads, rejected reads whose reasons quote the read, a plain barcode, a `WO:` work order, an
`OP:` badge, a shipment that does not reconcile (a label never stamped, scanned out twice):
no log record at INFO or above may carry any of the scanned payloads.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from agent_harness import running_agent
from destination_support import Receiver, destination, http_destination, receiving
from support import Pty, wait_until
from test_status_e2e import GTIN, line_config

from drivers.simulators.modbus_plc import FillingLineSimulator

if TYPE_CHECKING:
    from pathlib import Path

    import pytest
    from support import Broker

BAD_GTIN = "09501101530004"
SECRETS = [
    "MAT-SECRET-1",  # a material's lot, accepted
    BAD_GTIN,  # quoted by its rejection reason (check digit)
    "CTRL-SECRET",  # rejected for a control character
    "LOT-SECRET",  # quoted by its rejection reason (unknown AI at ...)
    "PLAIN-SECRET-42",  # a plain barcode
    "WO-SECRET-4711",  # a work order scanned at the line
    "BADGE-SECRET-99",  # an operator badge
    "SER-SECRET-7",  # a label shipped but never stamped, scanned out twice
]
LINE_READS = [
    b"]d2010950110153001010MAT-SECRET-1\r\n",
    f"]C101{BAD_GTIN}\r\n".encode(),
    b"CTRL-SECRET\x07X\r\n",
    b"]C123LOT-SECRET-9\r\n",
    b"PLAIN-SECRET-42\r\n",
    b"WO:WO-SECRET-4711\r\n",
    b"OP:BADGE-SECRET-99\r\n",
]


async def test_no_log_record_at_info_or_above_carries_a_scanned_payload(
    tmp_path: Path, broker: Broker, pty: Pty, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # the agent as it runs by default (`lineside run`)
    dock = Pty(tmp_path / "dock-out")
    dock.plug()
    receiver = Receiver(mode="reject", echo=True)
    try:
        async with (
            receiving(receiver),
            FillingLineSimulator(port=0, auto=False, handshake=True) as plc,
        ):
            config = line_config(tmp_path, broker, pty, plc.port, password=False, role="line")
            with config.open("a") as text:
                text.write(
                    http_destination(receiver, types='["material.consumed", "scan.rejected"]')
                    + f'[[scanners]]\nid = "dock-out-1"\nrole = "outbound"\nport = "{dock.link}"\n'
                    + "dedup_ms = 0\n"
                )
            async with running_agent(config) as agent:
                tracker = agent.batch_lines.named(None)
                for read in LINE_READS:
                    pty.write(read)
                await wait_until(
                    lambda: tracker.operator == "BADGE-SECRET-99", what="every line read handled"
                )
                assert tracker.work_order.work_order == "WO-SECRET-4711"
                await wait_until(  # 422 quoting the scans: quarantined
                    lambda: destination(agent, "erp").quarantined >= 5, what="quarantined"
                )
                await plc.complete_batch(120)
                await wait_until(lambda: tracker.completed == 1, what="batch stamped")
                lot = str(tracker.recent[0]["lot"])
                label = f"]C101{GTIN}10{lot}\x1d21SER-SECRET-7\r\n".encode()
                dock.write(label + label)
                await wait_until(
                    lambda: any(a.kind == "reconcile" for a in agent.alarms.active()),
                    what="the shipment's discrepancies raised an alarm",
                )
                receiver.mode = "down"  # 503 quoting the scans: the destination is down
                pty.write(b"]d2010950110153001010MAT-SECRET-1\r\n")
                await wait_until(
                    lambda: not destination(agent, "erp").connected, what="destination down"
                )
    finally:
        dock.unplug()

    formatter = logging.Formatter("%(message)s")
    loud = [formatter.format(r) for r in caplog.records if r.levelno >= logging.INFO]
    leaks = [(secret, line) for line in loud for secret in SECRETS if secret in line]
    assert leaks == [], "\n".join(f"{s!r} in: {line}" for s, line in leaks)
    # and the lines that would have carried them are there, without them
    assert any("read rejected (gs1.check_digit)" in line for line in loud), loud
    assert any("quarantined" in line for line in loud), loud
    assert any("erp is down" in line for line in loud), loud
    assert any("reconciliation of lot" in line for line in loud), loud
