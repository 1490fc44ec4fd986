"""The outbox against real SQLite files: group commit, durability, limits, routes, retention."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sync.base import Draft, OutboxClosed, OutboxFull
from sync.outbox import Outbox
from sync.schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parent.parent


def draft(
    n: int,
    route: str = "scan",
    *,
    size: int = 0,
    state: dict[str, str] | None = None,
    keys: tuple[tuple[str, str], ...] = (),
) -> Draft:
    head, tail = f'{{"n": {n}, "seq": '.encode(), b"}" + b" " * size
    return Draft(id=f"id-{n}", route=route, head=head, tail=tail, state=state or {}, keys=keys)


async def test_group_commit_is_gapless_and_shares_transactions(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.db", min_free_bytes=0) as outbox:
        envelopes = await asyncio.gather(*(outbox.append(draft(i)) for i in range(200)))
        assert sorted(e.seq for e in envelopes) == list(range(1, 201))
        assert outbox.last_seq == 200
        assert outbox.commits < 200
        for e in envelopes:
            assert e.payload == f'{{"n": {e.id.removeprefix("id-")}, "seq": {e.seq}}}'.encode()


async def test_reopen_keeps_events_cursors_and_state(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with Outbox(path, synchronous="normal", destinations=["a", "b"]) as outbox:
        await outbox.append_many([draft(i) for i in range(10)])
        await outbox.append(draft(10, "batch", state={"serial": "7"}, keys=(("lot", "L1"),)))
        outbox.advance("a", 5)
        await outbox.rewind("b", 3)
        outbox.advance("b", 4)  # persisted on close
    async with Outbox(path) as outbox:
        assert outbox.last_seq == 11
        assert (outbox.cursor("a"), outbox.cursor("b"), outbox.cursor("new")) == (5, 4, 0)
        assert outbox.state("serial") == "7"
        assert outbox.states("ser") == {"serial": "7"}
        found = await outbox.lookup("lot", "L1")
        assert [e.seq for e in found] == [11]
        got = await outbox.get(11)
        assert got is not None
        assert got.route == "batch"
        assert (await outbox.append(draft(11))).seq == 12
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


async def test_state_commits_with_its_event_or_not_at_all(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.db", min_free_bytes=0, max_backlog_bytes=1000) as outbox:
        await outbox.append(draft(1, state={"k": "1"}))
        too_big = draft(3, state={"k": "2"}, size=2000)  # refused by the backlog limit
        results = await asyncio.gather(
            outbox.append(too_big), outbox.append(draft(2)), return_exceptions=True
        )
        assert isinstance(results[0], OutboxFull)
        assert outbox.state("k") == "1"
        assert outbox.last_seq == 2  # no gap for the refused append
    with sqlite3.connect(tmp_path / "o.db") as db:
        assert db.execute("SELECT value FROM state WHERE key = 'k'").fetchall() == [("1",)]
        assert db.execute("SELECT seq FROM events").fetchall() == [(1,), (2,)]


async def test_cancelled_appender_still_commits(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.db", min_free_bytes=0) as outbox:
        task = asyncio.create_task(outbox.append(draft(1)))
        await asyncio.sleep(0)  # let it queue
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await outbox.wait_beyond(0)
        assert outbox.last_seq == 1
    with pytest.raises(OutboxClosed):
        await outbox.append(draft(2))


WRITER = """
import asyncio, sys
from pathlib import Path
from sync.base import Draft
from sync.outbox import Outbox

async def main() -> None:
    async with Outbox(Path(sys.argv[1]), min_free_bytes=0) as outbox:
        n = 0
        while True:
            batch = [outbox.append(Draft(id=f"id-{n + i}", route="scan",
                                         head=b"x" * 100, tail=b"",
                                         state={"last": str(n + i)}))
                     for i in range(20)]
            n += 20
            for env in await asyncio.gather(*batch):
                print(env.seq, flush=True)

asyncio.run(main())
"""


async def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    db = tmp_path / "o.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        str(db),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    printed: list[int] = []
    try:
        async with asyncio.timeout(60):
            while len(printed) < 500:
                line = await proc.stdout.readline()
                assert line, "the writer died early"
                printed.append(int(line))
    finally:
        proc.kill()  # SIGKILL mid-stream
        await proc.wait()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = {row[0] for row in conn.execute("SELECT seq FROM events")}
        top = max(stored)
    assert set(printed) <= stored
    assert stored == set(range(1, top + 1))


async def test_backlog_limit_refuses_without_dropping(tmp_path: Path) -> None:
    async with Outbox(
        tmp_path / "o.db", max_backlog_bytes=1000, min_free_bytes=0, destinations=["a"]
    ) as outbox:
        first = await outbox.append_many([draft(i, size=200) for i in range(4)])
        with pytest.raises(OutboxFull, match="max_backlog_bytes"):
            await outbox.append(draft(9, size=200))
        assert outbox.last_seq == 4
        backlog = await outbox.backlog("a")
        assert backlog.count == 4
        assert backlog.bytes == sum(len(e.payload) for e in first)
        outbox.advance("a", 2)
        await outbox.flush()
        assert (await outbox.append(draft(9, size=200))).seq == 5
        assert (await outbox.backlog("a")).count == 3


async def test_backlog_limit_holds_after_deliveries_and_a_rewind(tmp_path: Path) -> None:
    """The delivered figure is kept between commits; a rewind makes the backlog whole again."""
    async with Outbox(
        tmp_path / "o.db", max_backlog_bytes=1000, min_free_bytes=0, destinations=["a"]
    ) as outbox:
        await outbox.append_many([draft(i, size=200) for i in range(4)])  # ~870 bytes
        outbox.advance("a", 4)  # delivered
        for i in range(4, 9):  # accepted: the backlog is one event at a time
            (envelope,) = await outbox.append_many([draft(i, size=200)])
            outbox.advance("a", envelope.seq)
        await outbox.rewind("a", 0)  # all nine undelivered again: ~1,960 bytes
        with pytest.raises(OutboxFull, match="max_backlog_bytes"):
            await outbox.append(draft(99, size=200))
        assert outbox.last_seq == 9


async def test_disk_minimum_refuses(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.db", min_free_bytes=2**62) as outbox:
        with pytest.raises(OutboxFull, match="min_free_bytes"):
            await outbox.append(draft(1))
        assert outbox.last_seq == 0


def test_constructor_validates_early(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        Outbox(tmp_path / "o.db", synchronous="off")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_backlog_bytes"):
        Outbox(tmp_path / "o.db", max_backlog_bytes=0)
    with pytest.raises(TypeError):
        Outbox(str(tmp_path / "o.db"))  # type: ignore[arg-type]


async def test_read_filters_routes_and_reports_scanned_to(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.db", min_free_bytes=0) as outbox:
        routes = ["scan", "batch", "scan", "scan", "batch", "scan"]
        await outbox.append_many([draft(i, r) for i, r in enumerate(routes)])
        envs, scanned = await outbox.read(0, routes=None, limit=4)
        assert ([e.seq for e in envs], scanned) == ([1, 2, 3, 4], 4)
        envs, scanned = await outbox.read(0, routes=frozenset({"batch"}), limit=10)
        assert ([e.seq for e in envs], scanned) == ([2, 5], 6)
        envs, scanned = await outbox.read(0, routes=frozenset({"batch"}), limit=1)
        assert ([e.seq for e in envs], scanned) == ([2], 2)
        envs, scanned = await outbox.read(5, routes=frozenset({"batch"}), limit=10)
        assert (envs, scanned) == ([], 6)
        assert await outbox.read(6, routes=frozenset({"*"}), limit=10) == ([], 6)
        backlog = await outbox.backlog("x", frozenset({"batch"}))
        assert backlog.count == 2


async def test_wait_beyond_wakes_on_commit(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.db", min_free_bytes=0) as outbox:
        waiter = asyncio.create_task(outbox.wait_beyond(0))
        await asyncio.sleep(0)
        assert not waiter.done()
        await outbox.append(draft(1))
        async with asyncio.timeout(5):
            await waiter


async def test_prune_removes_only_delivered_everywhere(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.db", min_free_bytes=0, destinations=["a", "b"]) as outbox:
        await outbox.append_many([draft(i, keys=(("lot", f"L{i}"),)) for i in range(10)])
        outbox.advance("a", 10)
        outbox.advance("b", 6)
        envs, _ = await outbox.read(2, routes=None, limit=1)
        await outbox.quarantine("a", envs, "bad payload")
        assert await outbox.prune(time.time() - 3600) == 0  # nothing old enough
        assert await outbox.prune(time.time() + 1) == 5  # 1..6 but not 3 (quarantined)
        remaining, _ = await outbox.read(0, routes=None, limit=100)
        assert [e.seq for e in remaining] == [3, 7, 8, 9, 10]
        assert await outbox.lookup("lot", "L0") == []
        outbox.advance("b", 10)
        assert await outbox.prune(time.time() + 1) == 3  # the newest row is kept
        assert (await outbox.append(draft(11))).seq == 11


async def test_quarantine_release_and_drop(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.db", min_free_bytes=0) as outbox:
        envs = await outbox.append_many([draft(i) for i in range(3)])
        await outbox.quarantine("a", envs[:2], "HTTP 422")
        entries = await outbox.quarantined("a")
        assert [(q.seq, q.reason, q.released) for q in entries] == [
            (1, "HTTP 422", False),
            (2, "HTTP 422", False),
        ]
        before = outbox.generation("a")
        assert await outbox.release("a", 1)
        assert not await outbox.release("a", 3)
        assert outbox.generation("a") != before
        assert [e.seq for e in await outbox.released("a")] == [1]
        await outbox.settle("a", [1])
        assert await outbox.drop("a", 2, reason="operator: bad label")
        assert await outbox.quarantined(None) == []
    with sqlite3.connect(tmp_path / "o.db") as db:
        log = db.execute("SELECT seq, action, reason FROM quarantine_log ORDER BY seq").fetchall()
    assert log == [(1, "resent", "delivered"), (2, "dropped", "operator: bad label")]


async def test_reads_of_fresh_events_from_memory_match_the_database(tmp_path: Path) -> None:
    """A caught-up reader gets the just-committed events from memory: the same answer as SQLite."""
    async with Outbox(tmp_path / "o.db", min_free_bytes=0) as outbox:
        for i in range(60):
            await outbox.append(draft(i, "batch" if i % 7 == 0 else "scan"))
        asks = [
            (after, routes, limit)
            for after in (0, 1, 13, 59, 60)
            for routes in (None, frozenset({"*"}), frozenset({"batch"}), frozenset({"none"}))
            for limit in (1, 2, 500)
        ]
        from_memory = [await outbox.read(a, routes=r, limit=n) for a, r, n in asks]
        outbox._tail.clear()  # the same reads, now answered by SQLite
        from_sqlite = [await outbox.read(a, routes=r, limit=n) for a, r, n in asks]
        assert from_memory == from_sqlite


async def test_pruned_events_are_not_read_from_memory_after_a_rewind(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.db", min_free_bytes=0, destinations=["a"]) as outbox:
        await outbox.append_many([draft(i) for i in range(10)])
        outbox.advance("a", 8)
        assert await outbox.prune(time.time() + 1) == 8
        await outbox.rewind("a", 0)
        envelopes, _ = await outbox.read(0, routes=None, limit=500)
        assert [e.seq for e in envelopes] == [9, 10]
