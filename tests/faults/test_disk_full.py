"""Disk full: the data directory on a small tmpfs, filled up by another file while scans flow.

The agent must not crash, must refuse new reads (NAK) with the backlog alarm within 5 s, lose
nothing it acknowledged, and take reads again by itself once the space is back. Needs root to
mount the tmpfs; skipped with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
from typing import TYPE_CHECKING

import pytest
from agent_harness import running_agent, write_config
from support import subscriber, wait_until

from faults.oracle import Ledger, check, scan_delivery
from faults.test_sigkill_storm import EVENTS, SOURCE, integrity, scan_deliveries

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from support import Broker, Collected, Pty

    from faults.oracle import Counts


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs mounted at tmp_path/data."""
    if os.geteuid() != 0:
        pytest.skip("disk-full scenario needs root to mount a size-limited tmpfs")
    data = tmp_path / "data"
    data.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(data)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield data
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


def fill(path: Path) -> None:
    """Write into `path` until the filesystem has no space left."""
    chunk = os.urandom(64 * 1024)
    with path.open("wb") as f:
        while True:
            try:
                f.write(chunk)
                f.flush()
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return


async def test_disk_full_refuses_with_alarm_and_resumes(
    tmp_path: Path,
    broker: Broker,
    pty: Pty,
    small_disk: Path,
    report: Callable[[str, Counts], None],
) -> None:
    config = write_config(
        tmp_path, broker, {"dock-in-1": ("inbound", pty)}, store="min_free_mb = 2"
    )
    ledger = Ledger()
    keys: list[str] = []
    replies = bytearray()
    serial = 0

    async def scan(n: int) -> None:
        nonlocal serial
        for _ in range(n):
            serial += 1
            key = f"D{serial:07d}"
            ledger.sent(key, {"type": "goods.received", "source": SOURCE, "raw": key})
            keys.append(key)
            pty.write(key.encode() + b"\r\n")
        await asyncio.sleep(0.01)
        replies.extend(pty.read_available())

    async def scan_until(done: Callable[[], bool], timeout: float) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not done():
                await scan(2)

    filler = small_disk / "filler"
    async with subscriber(broker, EVENTS + "#") as got:
        async with running_agent(config) as agent:
            await scan_until(lambda: replies.count(b"\x06") >= 50, timeout=20)
            fill(filler)
            naks_before = replies.count(b"\x15")
            # refused with the alarm within 5 s, while reads keep coming
            await scan_until(
                lambda: replies.count(b"\x15") > naks_before and agent.alarms.is_active("backlog"),
                timeout=5,
            )
            await scan_until(lambda: replies.count(b"\x15") >= naks_before + 20, timeout=10)
            filler.unlink()
            acks_before = replies.count(b"\x06")
            # resumes by itself once the space is back
            await scan_until(lambda: replies.count(b"\x06") >= acks_before + 20, timeout=20)
            assert not agent.alarms.is_active("backlog")
            assert all(not r.last_error or r.running for r in agent.state.tasks.values()), (
                "a task failed on the full disk"
            )
            await wait_until(lambda: len(replies) >= len(keys), timeout=10, what="all answered")
            while chunk := pty.read_available():
                replies.extend(chunk)
            ledger.answers(keys, bytes(replies), ack=b"\x06", nak=b"\x15")
            wanted = set(ledger.acked)

            def arrived(g: Collected) -> bool:
                return wanted <= {scan_delivery(p).key for p in scan_deliveries(g)}

            with contextlib.suppress(TimeoutError):
                await got.wait_for(arrived, timeout=30)
        counts = check(ledger, [scan_delivery(p) for p in scan_deliveries(got)])
    assert integrity(small_disk / "outbox.db") == "ok"
    report(f"disk full: {len(ledger.refused)} reads refused (NAK) while full", counts)
    assert ledger.refused, "nothing was refused while the disk was full"
    assert counts.ok, counts.problems[:10]


async def _answer(pty: Pty, data: bytes) -> bytes:
    """Send one read and return the scanner's answer (good read or NAK)."""
    pty.write(data + b"\r\n")
    answer = bytearray()

    def answered() -> bool:
        answer.extend(pty.read_available())
        return bool(answer)

    await wait_until(answered, timeout=10, what=f"an answer to {data!r}")
    return bytes(answer)


async def test_a_packing_station_refuses_on_a_full_disk_and_resumes(
    tmp_path: Path, broker: Broker, pty: Pty, small_disk: Path
) -> None:
    """A packing station's read refused by the outbox: NAK and the backlog alarm, then back."""
    packing = '[packing]\ncompany_prefix = "0950110"\nextension_digit = 3\n'
    config = write_config(
        tmp_path, broker, {"pack-1": ("packing", pty)}, store="min_free_mb = 2", extra=packing
    )
    item = b"]d2010950110153000321A1"
    filler = small_disk / "filler"
    async with running_agent(config) as agent:
        assert await _answer(pty, b"PACK:NEW") == b"\x06"
        fill(filler)
        assert await _answer(pty, item) == b"\x15"
        assert agent.alarms.is_active("backlog")
        assert agent.packing[0].pallet.children == []  # nothing taken that was not committed
        filler.unlink()
        assert await _answer(pty, item) == b"\x06"
        assert not agent.alarms.is_active("backlog")
    assert integrity(small_disk / "outbox.db") == "ok"
