"""Forward migrations of the outbox's SQLite layout, applied in order, each in one transaction.

A database file records its layout in `schema_version`. Opening a file older than this code
runs every migration after its version, in order; each migration's statements, its entry in
`migration_log` and the new `schema_version` commit together, so a crash (or kill -9, or power
loss) in the middle leaves the file at the previous version and the next start carries on from
there. A file newer than this code is refused, never guessed at (downgrades are not supported:
keep the old package's file, or restore a backup).

Versions::

    1   the first released layout (Lineside 0.1): events, state, event_keys, cursors,
        quarantine, quarantine_log
    2   migration_log: which migration ran when, so an operator can see a file's history

Adding a migration: append a `Migration` with the next version, bump nothing else (`LATEST`
follows), add the same change to the fresh layout in `sync/schema.py`, and extend
`tests/test_migrations.py` (which upgrades a file made by version 1).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sync.base import OutboxError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import aiosqlite

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Migration:
    """One forward step: the statements that take the layout from `version - 1` to `version`."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATION_LOG_DDL = (
    "CREATE TABLE IF NOT EXISTS migration_log ("
    " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied REAL NOT NULL)"
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        2,
        "record applied migrations in migration_log",
        (MIGRATION_LOG_DDL,),
    ),
)

FIRST_VERSION = 1
LATEST = MIGRATIONS[-1].version if MIGRATIONS else FIRST_VERSION

_LOG_MIGRATION = "INSERT INTO migration_log (version, description, applied) VALUES (?, ?, ?)"


def _check_sequence() -> None:
    expected = FIRST_VERSION + 1
    for migration in MIGRATIONS:
        if migration.version != expected:
            raise AssertionError(f"migration {migration.version} out of order (want {expected})")
        expected += 1


_check_sequence()


def refuse_newer(found: int) -> None:
    """Raise the error for a file written by a newer Lineside."""
    raise OutboxError(
        f"outbox database has schema version {found}, this Lineside reads up to {LATEST}:"
        " it was written by a newer version (downgrades are not supported)"
    )


async def stored_version(conn: aiosqlite.Connection) -> int | None:
    """The layout version recorded in the file; None for a new (empty) database."""
    tables = await conn.execute_fetchall(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    )
    if not list(tables):
        return None
    rows = list(await conn.execute_fetchall("SELECT version FROM schema_version"))
    if not rows:
        return None
    return int(rows[0][0])


async def migrate(
    conn: aiosqlite.Connection,
    *,
    target: int = LATEST,
    steps: Sequence[Migration] = MIGRATIONS,
) -> list[int]:
    """Bring an existing file up to `target`, one transaction per migration; versions applied.

    `conn` must be in autocommit mode (`isolation_level=None`), as the outbox's writer is.
    `steps` are the known migrations (this release's, unless a test brings its own).
    """
    latest = steps[-1].version if steps else FIRST_VERSION
    if target > latest:
        raise ValueError(f"no migration to version {target} (latest is {latest})")
    applied: list[int] = []
    try:
        found = await stored_version(conn)
        if found is None:
            raise OutboxError("not an outbox database: it has no schema_version")
        if found > latest:
            refuse_newer(found)
        for migration in steps:
            if found < migration.version <= target:
                await _apply(conn, migration)
                applied.append(migration.version)
                found = migration.version
    except sqlite3.Error as exc:
        raise OutboxError(f"outbox migration failed: {exc}") from exc
    return applied


async def _apply(conn: aiosqlite.Connection, migration: Migration) -> None:
    await conn.execute("BEGIN IMMEDIATE")
    try:
        # re-read inside the write lock: another process may have migrated meanwhile
        rows = list(await conn.execute_fetchall("SELECT version FROM schema_version"))
        if int(rows[0][0]) >= migration.version:
            await conn.execute("ROLLBACK")
            return
        for statement in migration.statements:
            await conn.execute(statement)
        await conn.execute(MIGRATION_LOG_DDL)  # the log itself arrives with migration 2
        await conn.execute(_LOG_MIGRATION, (migration.version, migration.description, time.time()))
        await conn.execute("UPDATE schema_version SET version = ?", (migration.version,))
        await conn.execute("COMMIT")
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    log.info("outbox schema migrated to version %d: %s", migration.version, migration.description)
