"""SIGKILL storm: the agent killed at random instants and at the targeted fault points.

A pty scanner sends unique reads at about 500 a second; each good-read reply puts its read in
the oracle's ledger. Meanwhile the filling-line simulator completes a batch every ~0.1 s with
the request/acknowledge handshake: a batch is in the ledger once the agent set its ack coil
(every batch before the one the PLC is still holding), keyed by the PLC's batch counter, which
the agent snapshots as a process parameter. After every kill the outbox must pass
`PRAGMA integrity_check`; at the end every acknowledged read and batch must have reached an
independent subscriber: 0 lost, 0 unexpected (for batches: no second code for one batch),
0 distorted (duplicates and committed-but-unacknowledged events are reported, not failures);
the batch codes' serials run 1..n without a gap or a repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import termios
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from agent_harness import _BOOT, AgentProcess, write_config
from support import Pty, subscriber, wait_until
from test_e2e_batches import completed, plc_section, tcp

from drivers.simulators.modbus_plc import ACK, TRIGGER, FillingLineSimulator
from faults.conftest import size
from faults.oracle import Counts, Delivery, Ledger, check, scan_delivery
from sync.faults import ENV

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from support import Broker, Collected

EVENTS = "lineside/v1/plant-a/line-3/"
SOURCE = "scanner:dock-in-1"
POINTS = (
    "outbox.before_commit",
    "station.before_ack",
    "mqtt.before_puback",
    "publisher.before_cursor",
)
BATCH_POINTS = ("batch.after_commit", "batch.before_ack")
SCAN_TOPICS = ("/goods.received", "/goods.shipped", "/material.consumed", "/scan.rejected")
BATCH_UNITS = 4  # at 40 units/s: a batch every 0.1 s plus the handshake
READS_PER_TICK = 5  # five reads every 10 ms: about 500 events/s
TICK_S = 0.01


@dataclass
class FaultyAgent(AgentProcess):
    """`lineside run` as a child process, with an optional `LINESIDE_FAULT` kill point."""

    fault: str | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop(ENV, None)
        if self.fault:
            env[ENV] = self.fault
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, "run", "-c", str(self.config_file)],
                stdout=log,
                stderr=log,
                env=env,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def reap(self) -> int | None:
        """Wait for a process that killed itself (or kill it); its return code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.kill()
        code = self.process.wait(10)
        self.process = None
        return code


def integrity(db: Path) -> str:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def scan_deliveries(got: Collected) -> list[bytes]:
    return [p for t, p, _ in got.messages if t.startswith(EVENTS) and t.endswith(SCAN_TOPICS) and p]


def batch_delivery(envelope: dict[str, object]) -> Delivery:
    """A delivered batch.completed: its key is the PLC's batch counter at the stamp."""
    data = envelope["data"]
    assert isinstance(data, dict)
    content = {"type": envelope["type"], "quantity": data["quantity"]}
    payload = json.dumps(envelope, sort_keys=True).encode()
    return Delivery(str(envelope["id"]), f"batch-{data['params']['batch_no']}", content, payload)


class BatchLedger:
    """The PLC side of the ledger: which batches the agent acknowledged (ack coil set)."""

    def __init__(self, sim: FillingLineSimulator) -> None:
        self.sim = sim
        self.ledger = Ledger()

    def update(self) -> None:
        """Record every batch the PLC completed; all but one still waiting for its ack are acked."""
        sim = self.sim
        completed_now = sim.batches_completed
        for n in range(len(self.ledger.expected) + 1, completed_now + 1):
            self.ledger.sent(f"batch-{n}", {"type": "batch.completed", "quantity": BATCH_UNITS})
        waiting = bool(sim.value(TRIGGER)) and not bool(sim.value(ACK))
        for n in range(1, completed_now + (0 if waiting else 1)):
            self.ledger.acknowledge(f"batch-{n}")


class Storm:
    """One agent life after another, each ended by a kill; the ledgers of all of them."""

    def __init__(self, tmp_path: Path, broker: Broker, pty: Pty, sim: FillingLineSimulator) -> None:
        self.pty = pty
        self.db = tmp_path / "data" / "outbox.db"
        plc = plc_section(tcp(sim), poll_ms=20)
        self.proc = FaultyAgent(
            write_config(tmp_path, broker, {"dock-in-1": ("inbound", pty)}, extra=plc),
            tmp_path / "agent.log",
        )
        self.ledger = Ledger()
        self.batches = BatchLedger(sim)
        self.batch_counts = Counts()
        self.serials: list[str] = []
        self.lives = 0
        self.self_kills = 0
        self.serial = 0

    async def life(self, fault: str | None, run_for: float) -> None:
        """Start the agent, scan until it dies (fault point) or `run_for` s pass, kill it."""
        # reads left in the port by the previous life must not meet this life's replies
        termios.tcflush(self.pty._device, termios.TCIFLUSH)
        self.pty.read_available()
        self.proc.fault = fault
        self.proc.start()
        self.lives += 1
        await wait_until(
            lambda: (
                self.proc.log().count("scanner dock-in-1: connected") >= self.lives
                or not self.proc.alive()
            ),
            timeout=30,
            what="agent (re)started",
        )
        keys: list[str] = []
        replies = bytearray()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + run_for
        while self.proc.alive() and loop.time() < deadline:
            for _ in range(READS_PER_TICK):
                self.serial += 1
                key = f"K{self.lives:04d}-{self.serial:07d}"
                self.ledger.sent(key, {"type": "goods.received", "source": SOURCE, "raw": key})
                keys.append(key)
                self.pty.write(key.encode() + b"\r\n")
            replies += self.pty.read_available()
            await asyncio.sleep(TICK_S)
        if not self.proc.alive():
            self.self_kills += 1
        self.proc.reap()
        while chunk := self.pty.read_available():
            replies += chunk
        answered = self.ledger.answers(keys, bytes(replies), ack=b"\x06", nak=b"\x15")
        assert answered <= len(keys)
        self.batches.update()
        assert integrity(self.db) == "ok", f"integrity_check failed after life {self.lives}"

    async def settle(self, got: Collected) -> Counts:
        """A last life without faults: wait until everything acknowledged arrived, stop cleanly."""
        termios.tcflush(self.pty._device, termios.TCIFLUSH)
        self.batches.sim.units_per_s = 0  # the line stops: the batch it holds is the last
        self.proc.fault = None
        self.proc.start()
        self.lives += 1
        try:
            await wait_until(
                lambda: self.proc.log().count("scanner dock-in-1: connected") >= self.lives,
                timeout=30,
                what="agent started for the last time",
            )
            sim = self.batches.sim
            await wait_until(
                lambda: not sim.value(TRIGGER) and not sim.value(ACK),
                timeout=30,
                what="the last batch's handshake over",
            )
            self.batches.update()
            wanted = set(self.ledger.acked)
            wanted_batches = set(self.batches.ledger.acked)

            def arrived(g: Collected) -> bool:
                keys = {scan_delivery(p).key for p in scan_deliveries(g)}
                batches = {batch_delivery(e).key for e in completed(g)}
                return wanted <= keys and wanted_batches <= batches

            with contextlib.suppress(TimeoutError):  # the counts below say what is missing
                await got.wait_for(arrived, timeout=60)
        finally:
            assert self.proc.terminate() == 0
        self.batches.update()
        envelopes = completed(got)
        self.batch_counts = check(self.batches.ledger, [batch_delivery(e) for e in envelopes])
        self.serials = [str(e["data"]["serial"]) for e in envelopes]
        return check(self.ledger, [scan_delivery(p) for p in scan_deliveries(got)])

    def check_batches(self) -> None:
        """One code per batch: serials 1..n in order, as many as distinct batches delivered."""
        counts = self.batch_counts
        assert counts.ledger > 0, "no batch was acknowledged during the storm"
        assert counts.ok, counts.problems[:10]
        assert self.serials == [f"{n:06d}" for n in range(1, len(self.serials) + 1)]
        assert len(self.serials) == counts.delivered <= self.batches.sim.batches_completed


async def run_storm(
    tmp_path: Path,
    broker: Broker,
    pty: Pty,
    faults: Callable[[int], str | None],
    kills: int,
) -> tuple[Counts, Storm]:
    rng = random.Random(kills)
    async with (
        FillingLineSimulator(port=0, batch_units=BATCH_UNITS, units_per_s=40, seed=kills) as sim,
        subscriber(broker, EVENTS + "#") as got,
    ):
        storm = Storm(tmp_path, broker, pty, sim)
        for n in range(kills):
            await storm.life(faults(n), run_for=rng.uniform(0.1, 1.0))
        counts = await storm.settle(got)
    return counts, storm


async def test_sigkill_at_random_instants(
    tmp_path: Path, broker: Broker, pty: Pty, report: Callable[[str, Counts], None]
) -> None:
    counts, storm = await run_storm(tmp_path, broker, pty, lambda _: None, size(12, 600))
    report("SIGKILL storm, random instants", counts)
    report("SIGKILL storm, random instants: PLC batches", storm.batch_counts)
    assert counts.ledger > 0
    assert counts.ok, counts.problems[:10]
    storm.check_batches()


@pytest.mark.parametrize("point", POINTS + BATCH_POINTS)
async def test_sigkill_at_fault_point(
    tmp_path: Path, broker: Broker, pty: Pty, point: str, report: Callable[[str, Counts], None]
) -> None:
    rng = random.Random(point)
    kills = size(2, 100)
    most = 2 if point in BATCH_POINTS else 60  # a batch every ~0.1 s, scans at 500/s
    counts, storm = await run_storm(
        tmp_path, broker, pty, lambda _: f"{point}@{rng.randint(1, most)}", kills
    )
    title = f"SIGKILL storm at {point} ({storm.self_kills}/{kills} kills at the point)"
    report(title, counts)
    report(f"{title}: PLC batches", storm.batch_counts)
    assert storm.self_kills > 0, "the fault point was never reached"
    assert counts.ledger > 0 or point in BATCH_POINTS  # a batch point may strike before a scan
    assert counts.ok, counts.problems[:10]
    storm.check_batches()
