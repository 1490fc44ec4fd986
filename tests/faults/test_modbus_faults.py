"""Modbus faults under batch tracking: no wrong value accepted, recovery within two polls.

The filling-line simulator (pymodbus's own server) sits behind the test's TCP proxy; the agent
runs in this process with batch tracking in handshake mode and in counter mode. For each fault
— Modbus exception responses, late answers (inside and past the timeout), no answer, garbage
answers, truncated frames (the proxy halves every reply) and a PLC that reboots with its memory
zeroed — the test turns the fault on, completes a batch with a quantity and recipe of its own
while the fault lasts for a few polls, turns it off, and counts the polls the simulator sees
(the first read of each: coils, or holding registers in counter mode) until the batch is
stamped and its handshake over: at most two. A reboot must stamp nothing. The oracle's ledger
is one entry per batch the PLC completed, keyed by its quantity: an unexpected event is a
quantity never produced (a wrong value) or a second code for one batch; a distorted one
carries the wrong recipe or a temperature no probe reported. No task may crash and nothing may
be logged with a traceback. Short: one round of faults per mode; long: ten.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from agent_harness import running_agent, write_config
from support import subscriber, wait_until
from test_e2e_batches import NODE, RECIPE, complete, completed, plc_section

from drivers.simulators.modbus_plc import ACK, TRIGGER, FillingLineSimulator
from faults.conftest import size
from faults.oracle import Delivery, Ledger, check
from faults.proxy import FlakyProxy

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from support import Broker

    from agent.batches.tracker import BatchTracker
    from agent.runtime.agent import Agent
    from faults.oracle import Counts

FAULTS = (
    "exception:4",  # slave device failure
    "exception:2",  # illegal data address
    "late:0.15",  # answers late but inside the 300 ms timeout
    "late:0.6",  # answers after the client gave up
    "drop",
    "garbage",
    "truncated",
    "write-lost",  # the PLC does the write (code, ack), its answer is lost
    "reboot",
)
STAMPED_THROUGH = ("late:0.15", "write-lost")  # the reads still answer
POLL_MS = 100
HELD_POLLS = 3  # how many coil reads the fault lasts


def batch_delivery(envelope: dict[str, Any]) -> Delivery:
    data = envelope["data"]
    content = {
        "quantity": data["quantity"],
        "recipe": data["params"]["recipe"],
        "serial": data["serial"],
        "temperature_ok": 3.5 < float(data["params"]["fill_temp_c"]) < 4.5,
    }
    payload = json.dumps(envelope, sort_keys=True).encode()
    return Delivery(str(envelope["id"]), str(data["quantity"]), content, payload)


@dataclass
class FaultRun:
    """The simulator, its proxy and the agent of one run, and what the test counted."""

    sim: FillingLineSimulator
    proxy: FlakyProxy
    agent: Agent
    handshake: bool
    ledger: Ledger
    batches: int = 0
    worst_recovery: int = 0

    @property
    def tracker(self) -> BatchTracker:
        return self.agent.batch_lines.named(None)

    def coil_reads(self) -> int:
        """Polls that reached the PLC: the first read of each (coils, or holding registers)."""
        return self.sim.requests[1 if self.handshake else 3]

    async def polls(self, n: int, what: str) -> None:
        """Wait until the agent tried `n` more polls (coil reads reaching the simulator)."""
        start = self.coil_reads()
        await wait_until(lambda: self.coil_reads() >= start + n, timeout=30, what=what)

    async def stamped(self, n: int) -> None:
        await wait_until(lambda: self.tracker.completed >= n, timeout=30, what=f"batch {n} stamped")
        if self.handshake:
            await wait_until(
                lambda: not self.sim.value(TRIGGER) and not self.sim.value(ACK),
                timeout=30,
                what=f"handshake of batch {n} over",
            )

    def set_fault(self, fault: str, *, on: bool) -> None:
        kind, _, arg = fault.partition(":")
        faults = self.sim.faults
        match kind:
            case "exception":
                faults.exception_code = int(arg) if on else None
            case "late":
                faults.delay_s = float(arg) if on else 0.0
            case "drop":
                faults.drop = on
            case "garbage":
                faults.garbage = on
            case "write-lost":
                self.proxy.lose_write_replies = on
            case "truncated":
                self.proxy.truncate_replies = on
                if on:
                    self.proxy.cut()  # start from a frame boundary

    async def batch_through(self, fault: str) -> None:
        """Complete a batch while `fault` lasts; count the polls it takes once it is gone."""
        self.batches += 1
        n = self.batches
        quantity, recipe = 1000 + n, (n * 7) % 0x10000
        self.ledger.sent(str(quantity), {"quantity": quantity, "recipe": recipe})
        self.set_fault(fault, on=True)
        await self.sim.set_value(RECIPE, recipe)
        await complete(self.sim, quantity)
        await self.polls(HELD_POLLS, f"{HELD_POLLS} polls under {fault}")
        if fault not in STAMPED_THROUGH:
            assert self.tracker.completed == n - 1, f"stamped through {fault}"
        before = self.coil_reads()
        self.set_fault(fault, on=False)
        await self.stamped(n)
        self.ledger.acknowledge(str(quantity))
        self.worst_recovery = max(self.worst_recovery, self.coil_reads() - before)

    async def reboot(self) -> None:
        """The PLC reboots with its memory zeroed: nothing is stamped, polling resumes."""
        health = self.agent.lines[0].health
        stamped = self.tracker.completed
        reconnects = health.reconnects
        await self.sim.restart(zero=True)
        await wait_until(lambda: health.reconnects > reconnects, timeout=30, what="reconnect")
        before = self.coil_reads()
        await self.polls(HELD_POLLS, "polls after the reboot")
        assert self.tracker.completed == stamped, "a reboot stamped a batch"
        assert health.connected
        self.worst_recovery = max(self.worst_recovery, self.coil_reads() - before - HELD_POLLS)


@pytest.mark.parametrize("mode", ["handshake", "counter"])
async def test_modbus_faults_accept_no_wrong_value_and_recover(
    tmp_path: Path,
    broker: Broker,
    mode: str,
    caplog: pytest.LogCaptureFixture,
    report: Callable[[str, Counts], None],
) -> None:
    handshake = mode == "handshake"
    rounds = size(1, 10)
    caplog.set_level(logging.INFO)
    async with (
        FillingLineSimulator(port=0, auto=False, handshake=handshake, pulse_ms=50, seed=8) as sim,
        FlakyProxy(sim.port) as proxy,
    ):
        where = f'protocol = "modbus-tcp"\nhost = "127.0.0.1"\nport = {proxy.port}'
        trigger = "coil:0" if handshake else "holding:10"
        section = plc_section(where, trigger=trigger, handshake=handshake, poll_ms=POLL_MS)
        config = write_config(tmp_path, broker, {}, extra=section)
        async with subscriber(broker, f"{NODE}/#") as got, running_agent(config) as agent:
            run = FaultRun(sim, proxy, agent, handshake, Ledger())
            await wait_until(lambda: agent.lines[0].health.connected, what="PLC connected")
            if not handshake:
                await wait_until(
                    lambda: agent.outbox.state("batch:filler:counter") == "0", what="baseline"
                )
            for _ in range(rounds):
                for fault in FAULTS:
                    if fault == "reboot":
                        await run.reboot()
                    else:
                        await run.batch_through(fault)
            await got.wait_for(lambda g: len(completed(g)) >= run.batches, timeout=30)
            assert all(r.running for r in agent.state.tasks.values()), "a task crashed"
            # link faults are the driver's to ride out (its backoff restarts at the first good
            # poll), not the supervisor's, whose backoff grows to 30 s for a crashed task
            plc_restarts = agent.state.tasks["plc:filler"].restarts
    envelopes = completed(got)
    counts = check(run.ledger, [batch_delivery(e) for e in envelopes])
    for envelope in envelopes:
        d = batch_delivery(envelope)
        if not d.content["temperature_ok"]:
            counts.distorted += 1
            counts.problems.append(f"distorted: batch {d.key} temperature {envelope['data']}")
    serials = [e["data"]["serial"] for e in envelopes]
    report(
        f"Modbus faults, {mode} mode: {len(FAULTS)} faults x {rounds}, {run.batches} batches, "
        f"worst recovery {run.worst_recovery} poll(s)",
        counts,
    )
    assert counts.ok, counts.problems[:10]
    assert counts.delivered == run.batches, "exactly one code per completed batch"
    assert serials == [f"{n:06d}" for n in range(1, run.batches + 1)]
    assert run.worst_recovery <= 2, f"recovery took {run.worst_recovery} polls"
    assert plc_restarts == 0, "a PLC fault restarted the line task (supervisor backoff)"
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
