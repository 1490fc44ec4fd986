"""Scanner stream hygiene: bad framing never becomes an accepted event, unplugs leak nothing.

The agent runs as a process of its own (so `/proc/PID/fd` counts only its descriptors) with one
inbound scanner on a pty that reads GS1 SSCCs. Each unplug/replug cycle sends, in order:
power-on noise without a terminator, a burst of complete reads, two codes glued together (the
first one's terminator missing), a double read of one code in one write, a code whose
terminator never comes followed by a complete one, and noise bytes just before the cable is
pulled. Complete reads go into the oracle's ledger; everything else must be refused (NAK,
`scan.rejected`) or vanish — an accepted event for it counts as unexpected. After every replug
a complete read must be accepted again, and at the end the agent's descriptor count is back to
what it was after the first connect. Short: 20 cycles; long: 100.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from agent_harness import AgentProcess, write_config
from support import subscriber, wait_until

from faults.conftest import size
from faults.oracle import Ledger, check, scan_delivery
from faults.test_sigkill_storm import EVENTS, SOURCE, scan_deliveries

if TYPE_CHECKING:
    from collections.abc import Callable

    from support import Broker, Pty

    from faults.oracle import Counts

ACK, NAK = b"\x06", b"\x15"
SCANNER = "scanner dock-in-1"


def sscc(n: int) -> str:
    """A valid 18-digit SSCC (extension 0, GS1 prefix 9501101, serial `n`, check digit)."""
    body = f"09501101{n:09d}"
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def open_fds(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


class HygieneRun:
    """Writes the cycle's byte patterns to the pty and maps the agent's replies to them."""

    def __init__(self, pty: Pty, proc: AgentProcess) -> None:
        self.pty = pty
        self.proc = proc
        self.ledger = Ledger()
        self.bad_sent = 0
        self.bad_acked = 0
        self.serial = 0
        self._replies = bytearray()

    def code(self) -> str:
        self.serial += 1
        return "]C100" + sscc(self.serial)

    async def replies(self, n: int, what: str) -> bytes:
        """Wait for the next `n` reply bytes of the agent and take them."""

        def arrived() -> bool:
            self._replies += self.pty.read_available()
            return len(self._replies) >= n

        await wait_until(arrived, timeout=20, what=f"{n} replies to {what}")
        got = bytes(self._replies[:n])
        del self._replies[:n]
        return got

    async def good(self, count: int) -> None:
        """A burst of complete reads in one write: each must be acknowledged."""
        keys = [self.code() for _ in range(count)]
        for key in keys:
            self.ledger.sent(key, {"type": "goods.received", "source": SOURCE, "raw": key})
        self.pty.write(b"".join(k.encode() + b"\r\n" for k in keys))
        replies = await self.replies(count, "complete reads")
        self.ledger.answers(keys, replies, ack=ACK, nak=NAK)

    async def bad(self, data: bytes, what: str) -> None:
        """Bytes that are no complete read: one reply expected, and it must be a NAK."""
        self.bad_sent += 1
        self.pty.write(data)
        if await self.replies(1, what) == ACK:
            self.bad_acked += 1

    async def cycle(self) -> None:
        """One plugged-in period, ending with noise and the cable pulled."""
        await self.bad(b"\x00\xff\x13\x7f", "power-on noise without terminator")
        await self.good(3)
        glued = self.code().encode() + self.code().encode() + b"\r\n"
        await self.bad(glued, "two codes glued together")
        double = self.code()
        self.ledger.sent(double, {"type": "goods.received", "source": SOURCE, "raw": double})
        self.pty.write((double + "\r\n").encode() * 2)  # the same label read twice at once
        self.ledger.answers([double], await self.replies(1, "a double read"), ack=ACK, nak=NAK)
        await self.bad(self.code().encode(), "a code whose terminator never comes")
        await self.good(1)
        self.pty.write(self.code()[:9].encode() + b"\xfe\x00")  # noise as the plug comes out
        self.bad_sent += 1

    async def unplug_and_replug(self, cycle: int) -> None:
        self.pty.unplug()
        await wait_until(
            lambda: self.proc.log().count(f"{SCANNER}: link down") >= cycle,
            what=f"unplug {cycle} noticed",
        )
        self.pty.plug()
        self._replies.clear()
        await wait_until(
            lambda: self.proc.log().count(f"{SCANNER}: link back on") >= cycle,
            what=f"replug {cycle} noticed",
        )


async def test_stream_hygiene_over_unplug_cycles(
    tmp_path: Path, broker: Broker, pty: Pty, report: Callable[[str, Counts], None]
) -> None:
    cycles = size(20, 100)
    config = write_config(tmp_path, broker, {"dock-in-1": ("inbound", pty)})
    # a real scanner's settings: double reads suppressed (500 ms), partial frames given up fast
    text = config.read_text().replace(
        "dedup_ms = 0", "frame_timeout_ms = 100\nreconnect_max_s = 0.5"
    )
    config.write_text(text)
    proc = AgentProcess(config, tmp_path / "agent.log")
    run = HygieneRun(pty, proc)
    async with subscriber(broker, EVENTS + "#") as got:
        proc.start()
        try:
            assert proc.process is not None
            pid = proc.process.pid
            await wait_until(lambda: f"{SCANNER}: connected" in proc.log(), timeout=30, what="up")
            await run.good(2)
            fds_connected = open_fds(pid)
            fds_max = fds_connected
            for n in range(1, cycles + 1):
                await run.cycle()
                await run.unplug_and_replug(n)
                fds_max = max(fds_max, open_fds(pid))
            await run.good(2)  # the last replug recovered too
            with contextlib.suppress(AssertionError):  # the assertion below names the count
                await wait_until(
                    lambda: open_fds(pid) == fds_connected, timeout=5, what="descriptors back"
                )
            fds_end = open_fds(pid)
            wanted = set(run.ledger.acked)
            with contextlib.suppress(TimeoutError):  # the counts say what is missing
                await got.wait_for(
                    lambda g: wanted <= {scan_delivery(p).key for p in scan_deliveries(g)},
                    timeout=30,
                )
        finally:
            assert proc.terminate() == 0
    deliveries = [scan_delivery(p) for p in scan_deliveries(got)]
    accepted = [d for d in deliveries if d.content.get("type") != "scan.rejected"]
    rejected = {d.id for d in deliveries if d.content.get("type") == "scan.rejected"}
    counts = check(run.ledger, accepted)
    report(
        f"scanner hygiene: {cycles} unplug cycles, {run.bad_sent} bad frames sent, "
        f"{len(rejected)} scan.rejected, fds {fds_connected} -> max {fds_max} -> {fds_end}",
        counts,
    )
    assert counts.ok, counts.problems[:10]
    assert run.bad_acked == 0, "a partial or glued read was acknowledged"
    assert not run.ledger.refused, f"complete reads refused: {sorted(run.ledger.refused)[:5]}"
    assert len(run.ledger.acked) == len(run.ledger.expected)
    assert counts.delivered == len(run.ledger.acked)
    assert fds_end == fds_connected, "file descriptors leaked over the unplug cycles"
    assert "Traceback" not in proc.log()
