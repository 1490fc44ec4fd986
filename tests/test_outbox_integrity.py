"""A damaged, deleted or emptied outbox file is found and refused, never silently replaced.

Real SQLite files: damage is garbage written over pages in the middle of the file (as a failing
disk or a torn copy leaves it); "deleted" and "emptied" are what a wrong `rm` or `: > outbox.db`
leave. The identity record beside the file is what says an outbox existed there.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import pytest
from agent_harness import running_agent, write_config
from support import wait_until

from agent.config import load_config
from agent.runtime.agent import Agent
from sync.base import Draft, OutboxDamaged, OutboxError, OutboxMissing
from sync.outbox import Outbox
from sync.outbox_identity import identity_path, missing_problem

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from support import Broker

PAGE = 4096
EVENTS = 6000  # ~1.5 MB of payload: a few hundred pages of the events table


def draft(n: int) -> Draft:
    head, tail = f'{{"n": {n}, "seq": '.encode(), f', "pad": "{"x" * 200}"}}'.encode()
    return Draft(id=f"id-{n}", route="scan", head=head, tail=tail, keys=(("lot", f"L{n % 50}"),))


async def filled(path: Path, *, labels: dict[str, str] | None = None) -> None:
    """An outbox with EVENTS events, closed (checkpointed into the main file)."""
    path.parent.mkdir(exist_ok=True)
    async with Outbox(path, min_free_bytes=0, labels=labels or {}) as outbox:
        for start in range(0, EVENTS, 500):
            await outbox.append_many([draft(n) for n in range(start, start + 500)])


def damage(path: Path) -> None:
    """Garbage over a few pages a third of the way into the file (not the header page)."""
    pages = path.stat().st_size // PAGE
    with path.open("r+b") as f:
        for page in range(pages // 3, pages // 3 + 4):
            f.seek(page * PAGE)
            f.write(b"\xa5" * PAGE)


async def test_damaged_pages_are_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    await filled(path)
    damage(path)
    with pytest.raises(OutboxDamaged) as caught:
        async with Outbox(path, min_free_bytes=0):
            pass
    assert str(path) in str(caught.value)
    assert "backup" in str(caught.value)


async def test_a_file_that_is_not_a_database_is_refused_as_damaged(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    await filled(path)
    with path.open("r+b") as f:
        f.write(b"\xa5" * 100)  # the header
    with pytest.raises(OutboxDamaged, match=str(path)):
        async with Outbox(path, min_free_bytes=0):
            pass


async def test_a_new_outbox_records_its_identity(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with Outbox(path, labels={"site": "plant-a", "node": "line-3"}):
        pass
    record = json.loads(identity_path(path).read_text())
    assert record["site"] == "plant-a"
    assert record["node"] == "line-3"
    assert record["file"] == "outbox.db"
    assert record["created"].endswith("Z")
    assert missing_problem(path) is None


@pytest.mark.parametrize("how", ["deleted", "emptied"])
async def test_a_recorded_outbox_that_is_gone_is_refused(tmp_path: Path, how: str) -> None:
    path = tmp_path / "outbox.db"
    await filled(path, labels={"site": "plant-a", "node": "line-3"})
    if how == "deleted":
        path.unlink()
    else:
        path.write_bytes(b"")
    problem = missing_problem(path)
    assert problem is not None
    assert str(path) in problem
    with pytest.raises(OutboxMissing) as caught:
        async with Outbox(path, min_free_bytes=0):
            pass
    assert str(caught.value) == problem
    # the refusal changed nothing: no new file made, the record kept
    if how == "emptied":
        assert path.stat().st_size == 0
    else:
        assert not path.exists()
    assert identity_path(path).exists()


async def test_a_new_sequence_starts_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    await filled(path, labels={"site": "plant-a", "node": "line-3"})
    before = json.loads(identity_path(path).read_text())
    path.unlink()  # its -wal went with the clean close; a stray one must not be replayed
    (tmp_path / "outbox.db-wal").write_bytes(b"stale")
    async with Outbox(path, min_free_bytes=0, new_sequence=True) as outbox:
        assert outbox.started_anew is not None
        assert before["created"] in outbox.started_anew
        assert (await outbox.append(draft(1))).seq == 1
    after = json.loads(identity_path(path).read_text())
    assert after["previous"] == before["created"]
    assert after["created"] >= before["created"]
    assert (tmp_path / "outbox.db-wal.orphan").read_bytes() == b"stale"
    # the next start is an ordinary one
    async with Outbox(path, min_free_bytes=0) as outbox:
        assert outbox.started_anew is None
        assert outbox.last_seq == 1


async def test_a_new_sequence_never_replaces_an_outbox_that_is_there(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    await filled(path)
    async with Outbox(path, min_free_bytes=0, new_sequence=True) as outbox:
        assert outbox.started_anew is None
        assert outbox.last_seq == EVENTS


async def test_an_outbox_older_than_the_record_gets_one_on_its_first_open(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    await filled(path)
    identity_path(path).unlink()  # as made by a Lineside before the record existed
    with sqlite3.connect(path) as db:
        first = db.execute("SELECT min(created) FROM events").fetchone()[0]
    async with Outbox(path, min_free_bytes=0, labels={"site": "s", "node": "n"}) as outbox:
        assert outbox.last_seq == EVENTS
    record = json.loads(identity_path(path).read_text())
    assert record["node"] == "n"
    assert record["created"].startswith(
        datetime.fromtimestamp(first, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    )
    path.unlink()
    with pytest.raises(OutboxMissing):
        async with Outbox(path, min_free_bytes=0):
            pass


async def test_a_database_error_while_open_is_the_outbox_fault(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    await filled(path)
    async with Outbox(path, min_free_bytes=0) as outbox:
        assert outbox.fault is None
        damage(path)  # the disk goes bad under the running agent
        with pytest.raises(OutboxError) as caught:
            await outbox.recent(limit=EVENTS, routes=frozenset({"scan"}))
        assert isinstance(caught.value, OutboxDamaged)
        assert outbox.fault is not None
        assert "malformed" in outbox.fault
        # appends at the end of the file may still work: the damage stays reported
        await outbox.append(draft(EVENTS))
        assert outbox.fault is not None


# --- the agent: refuses to start on it, says so while running --------------------------------


def lineside_run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(config), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,  # an agent that does not refuse runs for ever: that is the failure
    )


async def test_run_refuses_a_damaged_outbox_with_one_line(tmp_path: Path, broker: Broker) -> None:
    config = write_config(tmp_path, broker, {})
    db = tmp_path / "data" / "outbox.db"
    await filled(db, labels={"site": "plant-a", "node": "line-3"})
    damage(db)
    done = lineside_run(config)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"lineside: agent.data_dir: outbox {db} is damaged"), last
    assert "backup" in last
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("how", ["deleted", "emptied"])
async def test_run_refuses_a_recorded_outbox_that_is_gone(
    tmp_path: Path, broker: Broker, how: str
) -> None:
    config = write_config(tmp_path, broker, {})
    db = tmp_path / "data" / "outbox.db"
    await filled(db, labels={"site": "plant-a", "node": "line-3"})
    if how == "deleted":
        db.unlink()
    else:
        db.write_bytes(b"")
    done = lineside_run(config)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"agent.data_dir: outbox {db} is ")
    assert "--new-outbox" in lines[0]
    assert not db.exists() or db.stat().st_size == 0  # nothing made in its place


async def test_new_outbox_starts_at_one_with_an_alarm(tmp_path: Path, broker: Broker) -> None:
    config = write_config(tmp_path, broker, {})
    db = tmp_path / "data" / "outbox.db"
    await filled(db, labels={"site": "plant-a", "node": "line-3"})
    db.unlink()
    agent = Agent(load_config(config), new_outbox=True)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(agent.run(stop, ready=ready.set))
    try:
        async with asyncio.timeout(20):
            await ready.wait()
        await wait_until(lambda: agent.status_url is not None, what="the status page")
        await wait_until(lambda: agent.alarms.is_active("outbox-new"), what="the alarm")
        assert agent.outbox.started_anew is not None
        assert agent.outbox.last_seq < EVENTS  # a new sequence (device events only)
        seqs = [e.seq for e in await agent.outbox.recent(limit=10)]
        assert not seqs or min(seqs) == 1
    finally:
        stop.set()
        async with asyncio.timeout(20):
            await task


async def test_damage_while_running_raises_an_alarm_and_healthz_503(
    tmp_path: Path, broker: Broker
) -> None:
    config = write_config(tmp_path, broker, {})
    db = tmp_path / "data" / "outbox.db"
    await filled(db, labels={"site": "plant-a", "node": "line-3"})
    async with running_agent(config) as agent, httpx.AsyncClient(timeout=10) as http:
        await wait_until(lambda: agent.status_url is not None, what="the status page")
        url = str(agent.status_url).rstrip("/")

        async def healthz() -> int:
            return (await http.get(f"{url}/healthz")).status_code

        await poll(lambda: _is(healthz(), 200), "healthz ok before the damage")
        damage(db)
        await agent.outbox.append(draft(EVENTS))  # a commit: readers see the file as it is now
        events = await http.get(f"{url}/api/events", params={"type": "none", "limit": 1000})
        assert events.status_code != 200
        await poll(lambda: _is(healthz(), 503), "healthz 503 after the damage")
        body = (await http.get(f"{url}/healthz")).json()
        assert any("damaged" in reason for reason in body["reasons"]), body
        # the monitor raises the alarm on its next round (each second)
        await poll(_true(lambda: agent.alarms.is_active("outbox")), "the outbox alarm")


def _true(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return check()

    return run


async def _is(status: Awaitable[int], expected: int) -> bool:
    return await status == expected


async def poll(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)
