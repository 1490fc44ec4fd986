"""SIGKILL storm, PLC part, over OPC UA, S7 and EtherNet/IP (the Modbus line's is
`test_sigkill_storm`).

Each protocol's simulator completes a batch every ~0.1 s with the request/acknowledge handshake
while the agent is killed again and again: at random instants and at the batch fault points
(`batch.after_commit`: committed, the PLC not told; `batch.before_ack`: the code written, the
ack not). A batch is in the ledger once the agent set its ack (every batch before the one the
PLC still holds), keyed by the PLC's batch id, which the agent snapshots as a parameter. After
every kill the outbox passes `PRAGMA integrity_check`; at the end every acknowledged batch has
reached an independent subscriber exactly once as far as codes go (0 lost, 0 unexpected: no
second code for one batch) and the serials run 1..n without a gap or a repeat.
"""

from __future__ import annotations

import contextlib
import random
from typing import TYPE_CHECKING

import pytest
from agent_harness import write_config
from protocol_lines import PROTOCOLS, address, plc_section, simulator
from support import subscriber, wait_until
from test_e2e_batches import completed

from faults.conftest import size
from faults.oracle import Counts, Ledger, check
from faults.test_sigkill_storm import EVENTS, FaultyAgent, batch_delivery, integrity

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from support import Broker

    from drivers.simulators.line_program import SimulatedPlc

BATCH_UNITS = 4  # at 40 units/s: a batch every 0.1 s plus the handshake


class PlcLedger:
    """The PLC side: which batches the agent acknowledged (all before the one still held)."""

    def __init__(self, sim: SimulatedPlc) -> None:
        self.sim = sim
        self.ledger = Ledger()
        self.completed = 0

    def update(self) -> None:
        completed_now = int(self.sim.value("batch_id"))
        for n in range(self.completed + 1, completed_now + 1):
            self.ledger.sent(f"batch-{n}", {"type": "batch.completed", "quantity": BATCH_UNITS})
        self.completed = max(self.completed, completed_now)
        waiting = bool(self.sim.value("trigger")) and not bool(self.sim.value("ack"))
        for n in range(1, completed_now + (0 if waiting else 1)):
            self.ledger.acknowledge(f"batch-{n}")


async def life(proc: FaultyAgent, lives: int, fault: str | None, run_for: float) -> bool:
    """One agent life ended by a kill (its own at the fault point, or ours); if it killed itself."""
    proc.fault = fault
    proc.start()
    await wait_until(
        lambda: proc.log().count("lineside running") >= lives or not proc.alive(),
        timeout=30,
        what="agent (re)started",
    )
    with contextlib.suppress(AssertionError):  # still alive after run_for: we kill it
        await wait_until(lambda: not proc.alive(), timeout=run_for, what="a fault point")
    self_killed = not proc.alive()
    proc.reap()
    return self_killed


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_plc_sigkill_storm(
    tmp_path: Path, broker: Broker, protocol: str, report: Callable[[str, Counts], None]
) -> None:
    rng = random.Random(protocol)
    kills = size(6, 150)
    points = (None, "batch.after_commit", "batch.before_ack")
    sim = simulator(
        protocol, handshake=True, pulse_ms=500, auto=True, batch_units=BATCH_UNITS, units_per_s=40
    )
    db = tmp_path / "data" / "outbox.db"
    async with sim, subscriber(broker, EVENTS + "#") as got:
        section = plc_section(protocol, sim, params={"batch_no": address(protocol, "batch_id")})
        proc = FaultyAgent(write_config(tmp_path, broker, {}, extra=section), tmp_path / "a.log")
        ledger = PlcLedger(sim)
        self_kills = 0
        for n in range(kills):
            point = points[n % len(points)]
            fault = None if point is None else f"{point}@{rng.randint(1, 2)}"
            self_kills += await life(proc, n + 1, fault, rng.uniform(0.2, 1.0))
            ledger.update()
            assert integrity(db) == "ok", f"integrity_check failed after life {n + 1}"
        sim.units_per_s = 0  # the line stops: the batch it holds is the last
        proc.fault = None
        proc.start()
        try:
            await wait_until(
                lambda: not sim.value("trigger") and not sim.value("ack"),
                timeout=30,
                what="the last batch's handshake over",
            )
            ledger.update()
            wanted = set(ledger.ledger.acked)
            with contextlib.suppress(TimeoutError):  # the counts below say what is missing
                await got.wait_for(
                    lambda g: wanted <= {batch_delivery(e).key for e in completed(g)}, timeout=60
                )
        finally:
            assert proc.terminate() == 0
    envelopes = completed(got)
    counts = check(ledger.ledger, [batch_delivery(e) for e in envelopes])
    report(f"SIGKILL storm, PLC over {protocol} ({self_kills}/{kills} at a point)", counts)
    assert self_kills > 0, "no fault point was reached"
    assert counts.ledger > 0, "no batch was acknowledged during the storm"
    assert counts.ok, counts.problems[:10]
    serials = [str(e["data"]["serial"]) for e in envelopes]
    assert serials == [f"{n:06d}" for n in range(1, len(serials) + 1)]
    assert len(serials) == counts.delivered <= ledger.completed
