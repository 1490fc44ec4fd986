"""Power-loss simulation for the outbox: copies of its files taken while a writer commits.

No fault-injecting filesystem is available here (LazyFS is not packaged for this Debian), so the
database and its WAL are copied at random instants while appends commit, with
`synchronous=FULL`. A reader holds a snapshot during each copy so the WAL is not restarted in
the middle of it (a real power cut freezes the files at one instant; a copy takes time); the
WAL's tail may still be torn mid-frame. Every copy must open, pass `PRAGMA integrity_check` and
hold every transaction that was reported committed before the copy began, byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import sqlite3
from typing import TYPE_CHECKING

from agent.events import EventFactory
from faults.conftest import size
from faults.oracle import Counts
from sync.outbox import Outbox

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

WRITERS = 4


def copy_files(db: Path, target: Path) -> None:
    """Copy the database, then its WAL (as it is at that moment), into `target`."""
    target.mkdir()
    shutil.copyfile(db, target / db.name)
    wal = db.with_name(db.name + "-wal")
    with contextlib.suppress(FileNotFoundError):
        shutil.copyfile(wal, target / wal.name)


def committed_in(copy: Path) -> tuple[str, dict[int, bytes]]:
    with contextlib.closing(sqlite3.connect(copy)) as conn:
        verdict = str(conn.execute("PRAGMA integrity_check").fetchone()[0])
        rows = {int(s): bytes(p) for s, p in conn.execute("SELECT seq, payload FROM events")}
    return verdict, rows


async def test_copies_taken_during_commits_hold_every_committed_event(
    tmp_path: Path, report: Callable[[str, Counts], None]
) -> None:
    db = tmp_path / "outbox.db"
    factory = EventFactory("plant-a", "line-3")
    payloads: dict[int, bytes] = {}
    copies = size(20, 500)
    rng = random.Random(7)
    counts = Counts()
    stop = asyncio.Event()

    async with Outbox(db, synchronous="full", destinations=["plant-broker"]) as outbox:

        async def write(n: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                env = await outbox.append(
                    factory.draft("goods.received", f"w{n}", {"raw": f"W{n}-{i:07d}"})
                )
                payloads[env.seq] = env.payload

        async with asyncio.TaskGroup() as tg:
            for n in range(WRITERS):
                tg.create_task(write(n))
            try:
                for k in range(copies):
                    await asyncio.sleep(rng.uniform(0.005, 0.05))
                    committed = max(payloads, default=0)  # reported committed before the copy began
                    with contextlib.closing(sqlite3.connect(db)) as reader:
                        reader.execute("BEGIN")
                        reader.execute("SELECT count(*) FROM cursors").fetchone()
                        copy_files(db, tmp_path / f"copy-{k}")
                        reader.execute("COMMIT")
                    verdict, rows = committed_in(tmp_path / f"copy-{k}" / db.name)
                    assert verdict == "ok", f"copy {k}: integrity_check says {verdict}"
                    missing = [s for s in range(1, committed + 1) if s not in rows]
                    wrong = [
                        s
                        for s in range(1, committed + 1)
                        if s in rows and s in payloads and rows[s] != payloads[s]
                    ]
                    counts.ledger += committed
                    counts.delivered += len(rows)
                    counts.lost += len(missing)
                    counts.distorted += len(wrong)
                    counts.unexpected += sum(1 for s, p in rows.items() if payloads.get(s, p) != p)
                    assert not missing, f"copy {k}: committed seqs missing: {missing[:10]}"
                    assert not wrong, f"copy {k}: committed seqs changed: {wrong[:10]}"
                    shutil.rmtree(tmp_path / f"copy-{k}")
            finally:
                stop.set()
    report(f"power loss: {copies} copies during commits (sums over copies)", counts)
    assert counts.ok
