"""Link faults between the agent and the broker, through a TCP proxy the test controls.

Flapping link: the proxy cuts every connection every 1-3 s and delays packets while scans flow;
every acknowledged scan must arrive, the publisher reconnecting after each cut.

Broker outage: the agent cannot reach the broker while a backlog waits in its outbox (put there
before it starts, so the test needs no hours of scanning) and live scans keep coming; once the
link is back everything arrives in seq order, the live scans too, and the agent's RSS stays
flat (the backlog lives on disk). The subscriber talks to the broker directly throughout, so
nothing it should see is published before it subscribed. Short: 10,000 buffered events (the
100,000 of the issue take minutes to drain into a Python subscriber); long: 1,000,000.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING

from agent_harness import AgentProcess, write_config
from support import Collected, subscriber, wait_until

from agent.events import EventFactory
from faults.conftest import size
from faults.oracle import Ledger, check, scan_delivery
from faults.proxy import FlakyProxy
from faults.test_sigkill_storm import EVENTS, SOURCE, scan_deliveries
from sync.outbox import Outbox

if TYPE_CHECKING:
    from collections.abc import Callable

    from support import Broker, Pty

    from faults.oracle import Counts


class Scanning:
    """Unique reads written to a pty, and the replies mapped into a ledger."""

    def __init__(self, pty: Pty, prefix: str) -> None:
        self.pty = pty
        self.prefix = prefix
        self.ledger = Ledger()
        self.keys: list[str] = []
        self.sent_at: dict[str, float] = {}
        self.replies = bytearray()

    async def scan(self, n: int, pause: float = 0.01) -> None:
        for _ in range(n):
            key = f"{self.prefix}{len(self.keys) + 1:07d}"
            self.ledger.sent(key, {"type": "goods.received", "source": SOURCE, "raw": key})
            self.keys.append(key)
            self.sent_at[key] = time.monotonic()
            self.pty.write(key.encode() + b"\r\n")
        await asyncio.sleep(pause)
        self.replies += self.pty.read_available()

    async def settle(self) -> None:
        await wait_until(
            lambda: len(self.replies) >= len(self.keys) or not self._more(),
            timeout=20,
            what="every read answered",
        )
        self.ledger.answers(self.keys, bytes(self.replies), ack=b"\x06", nak=b"\x15")

    def _more(self) -> bool:
        self.replies += self.pty.read_available()
        return True


def ledger_arrived(ledger: Ledger) -> Callable[[Collected], bool]:
    """A check that every acknowledged read arrived; it reads only messages new since its last
    call (re-parsing a million messages on every check starved the subscriber)."""
    missing: set[str | None] = set(ledger.acked)
    read = 0

    def arrived(g: Collected) -> bool:
        nonlocal read
        new = g.messages[read:]
        read += len(new)
        batch = Collected(messages=new)
        missing.difference_update(scan_delivery(p).key for p in scan_deliveries(batch))
        return not missing

    return arrived


async def test_flapping_link_loses_nothing(
    tmp_path: Path, broker: Broker, pty: Pty, report: Callable[[str, Counts], None]
) -> None:
    duration = size(8, 60)
    rng = random.Random(3)
    async with FlakyProxy(broker.port, delay_s=0.002) as proxy:
        config = write_config(tmp_path, broker, {"dock-in-1": ("inbound", pty)})
        text = config.read_text().replace(broker.url, f"mqtt://127.0.0.1:{proxy.port}")
        config.write_text(text)
        scanning = Scanning(pty, "F")
        # the agent in a process of its own: its sockets and the proxy's share no event loop
        proc = AgentProcess(config, tmp_path / "agent.log")
        async with subscriber(broker, EVENTS + "#") as got:
            proc.start()
            try:
                await wait_until(
                    lambda: "scanner dock-in-1: connected" in proc.log(), timeout=30, what="up"
                )
                loop = asyncio.get_running_loop()
                end = loop.time() + duration
                next_cut = loop.time() + rng.uniform(1, 3)
                while loop.time() < end:
                    await scanning.scan(2)
                    if loop.time() >= next_cut:
                        proxy.cut()
                        next_cut = loop.time() + rng.uniform(1, 3)
                await scanning.settle()
                with contextlib.suppress(TimeoutError):  # the counts say what is missing
                    await got.wait_for(ledger_arrived(scanning.ledger), timeout=30)
            finally:
                assert proc.terminate() == 0
        reconnects = proxy.accepted - 1
        assert "scanner dock-in-1: link down" not in proc.log()
        counts = check(scanning.ledger, [scan_delivery(p) for p in scan_deliveries(got)])
    report(f"flapping link: {proxy.cuts} cuts in {duration} s, {reconnects} reconnections", counts)
    assert proxy.cuts >= 2
    assert counts.ok, counts.problems[:10]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_broker_outage_backlog_drains_in_order_with_live_scans(
    tmp_path: Path, broker: Broker, pty: Pty, report: Callable[[str, Counts], None]
) -> None:
    backlog = size(10_000, 1_000_000)
    config = write_config(tmp_path, broker, {"dock-in-1": ("inbound", pty)})
    async with FlakyProxy(broker.port) as proxy:
        config.write_text(config.read_text().replace(broker.url, f"mqtt://127.0.0.1:{proxy.port}"))
        proxy.blocked = True
        ledger = Ledger()
        factory = EventFactory("plant-a", "line-3")
        (tmp_path / "data").mkdir()
        async with Outbox(tmp_path / "data" / "outbox.db", destinations=["plant-broker"]) as ob:
            for start in range(0, backlog, 5000):
                drafts = []
                for i in range(start, min(backlog, start + 5000)):
                    key = f"B{i:08d}"
                    ledger.sent(key, {"type": "goods.received", "source": SOURCE, "raw": key})
                    ledger.acknowledge(key)
                    drafts.append(factory.draft("goods.received", SOURCE, {"raw": key}))
                await ob.append_many(drafts)
        proc = AgentProcess(config, tmp_path / "agent.log")
        scanning = Scanning(pty, "L")
        async with subscriber(broker, EVENTS + "#") as got:
            proc.start()
            try:
                await wait_until(
                    lambda: "scanner dock-in-1: connected" in proc.log(), timeout=30, what="up"
                )
                assert proc.process is not None
                pid = proc.process.pid
                for _ in range(20):
                    await scanning.scan(2, pause=0.02)
                rss_before = rss_kb(pid)
                proxy.blocked = False  # the broker is back
                rss_max = rss_before
                drained = ledger_arrived(ledger)
                async with asyncio.timeout(size(60, 3000)):
                    while not drained(got):
                        await scanning.scan(1, pause=0.05)
                        rss_max = max(rss_max, rss_kb(pid))
                for _ in range(10):
                    await scanning.scan(1, pause=0.05)
                await scanning.settle()
                with contextlib.suppress(TimeoutError):
                    await got.wait_for(ledger_arrived(scanning.ledger), timeout=30)
            finally:
                assert proc.terminate() == 0
    for key in scanning.ledger.expected:
        ledger.sent(key, scanning.ledger.expected[key])
    ledger.acked |= scanning.ledger.acked
    deliveries = [scan_delivery(p) for p in scan_deliveries(got)]
    counts = check(ledger, deliveries)
    seqs: list[int] = []
    for p in scan_deliveries(got):
        seq = int(p.split(b'"seq":', 1)[1].split(b",", 1)[0])
        if not seqs or seq > seqs[-1]:
            seqs.append(seq)
    out_of_order = len(
        {int(p.split(b'"seq":', 1)[1].split(b",", 1)[0]) for p in scan_deliveries(got)}
    ) - len(seqs)
    report(
        f"broker outage: {backlog} buffered + {len(scanning.keys)} live, "
        f"RSS {rss_before // 1024} -> max {rss_max // 1024} MB, {out_of_order} out of order",
        counts,
    )
    assert counts.ok, counts.problems[:10]
    assert out_of_order == 0, "not delivered in seq order"
    assert rss_max - rss_before < 64 * 1024, "RSS grew with the backlog"
