"""Schema migrations: a file made by the first released layout (version 1) opens, upgraded."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from sync import migrations
from sync.base import Draft, OutboxError
from sync.outbox import Outbox
from sync.schema import SCHEMA_VERSION

# Made by Lineside 0.1 (schema version 1) with two destinations ("plant-broker" at seq 20,
# "erp" at seq 12 with seq 13 quarantined), 20 events, a state key and lot lookup keys.
V1_FILE = Path(__file__).parent / "data" / "outbox-v1.db"


@pytest.fixture
def v1_copy(tmp_path: Path) -> Path:
    path = tmp_path / "outbox.db"
    shutil.copyfile(V1_FILE, path)
    return path


def _version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT version FROM schema_version").fetchone()[0])


def _draft(n: int) -> Draft:
    return Draft(f"new-{n}", "goods.received", head=b'{"seq": ', tail=b"}")


def test_the_v1_file_is_version_1() -> None:
    assert _version(V1_FILE) == 1
    assert SCHEMA_VERSION == migrations.LATEST > 1


async def test_opening_a_v1_file_migrates_it_and_keeps_everything(v1_copy: Path) -> None:
    async with Outbox(v1_copy) as outbox:
        assert outbox.last_seq == 20
        assert (outbox.cursor("plant-broker"), outbox.cursor("erp")) == (20, 12)
        assert outbox.state("serial:filler") == "20"
        assert [e.seq for e in await outbox.lookup("lot", "L1")] == [1, 4, 7, 10, 13, 16, 19]
        assert [(q.dest, q.seq) for q in await outbox.quarantined()] == [("erp", 13)]
        backlog = await outbox.backlog("erp")
        assert backlog.count == 8
        envelope = await outbox.append(_draft(1))
        assert envelope.seq == 21
        envelopes, _ = await outbox.read(12, routes=None, limit=100)
        assert [e.seq for e in envelopes] == list(range(13, 22))
        assert json.loads(envelopes[0].payload)["seq"] == 13
    assert _version(v1_copy) == SCHEMA_VERSION
    with sqlite3.connect(v1_copy) as db:
        logged = db.execute("SELECT version, description FROM migration_log").fetchall()
    assert [v for v, _ in logged] == list(range(2, SCHEMA_VERSION + 1))
    async with Outbox(v1_copy) as outbox:  # a second open has nothing left to do
        assert outbox.last_seq == 21


async def test_migrations_run_one_transaction_each_and_stop_at_the_target(v1_copy: Path) -> None:
    async with aiosqlite.connect(v1_copy, isolation_level=None) as conn:
        assert await migrations.migrate(conn, target=1) == []
        assert await migrations.stored_version(conn) == 1
        assert await migrations.migrate(conn) == [m.version for m in migrations.MIGRATIONS]
        assert await migrations.stored_version(conn) == migrations.LATEST
        assert await migrations.migrate(conn) == []
        with pytest.raises(ValueError, match="no migration"):
            await migrations.migrate(conn, target=migrations.LATEST + 1)


async def test_a_failing_migration_leaves_the_file_at_its_old_version(v1_copy: Path) -> None:
    broken = migrations.Migration(2, "broken", ("CREATE TABLE migration_log (x)", "NOT SQL"))
    async with aiosqlite.connect(v1_copy, isolation_level=None) as conn:
        with pytest.raises(OutboxError, match="migration failed"):
            await migrations.migrate(conn, steps=(broken,))
        assert await migrations.stored_version(conn) == 1
        tables = await conn.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE name = 'migration_log'"
        )
        assert list(tables) == []
    async with Outbox(v1_copy) as outbox:  # the real migration still applies afterwards
        assert outbox.last_seq == 20
    assert _version(v1_copy) == SCHEMA_VERSION


async def test_a_file_from_a_newer_lineside_is_refused(v1_copy: Path) -> None:
    with sqlite3.connect(v1_copy) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(OutboxError, match="newer version"):
        async with Outbox(v1_copy):
            pass


async def test_a_new_file_starts_at_the_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    async with Outbox(path) as outbox:
        await outbox.append(_draft(1))
    assert _version(path) == SCHEMA_VERSION
