"""The outbox's SQLite layout: pragmas (and why each is set), tables, version check, statements.

Tables::

    schema_version  one row, the layout version (see sync/migrations.py); an older file is
                    migrated forward on open, a newer one is refused, not guessed at
    migration_log   which migration ran when (version 2)
    events          seq (gapless, from 1), id, route, payload (BLOB ready to send), created,
                    cum_bytes (running total of payload bytes up to and including the row, so
                    the undelivered backlog in bytes is one subtraction)
    state           application key/values committed with the events that change them
    event_keys      (kind, value) -> seq lookup keys for trace queries
    cursors         one row per destination: the highest seq delivered contiguously
    quarantine      events a destination refused for good, per destination, with the reason
    quarantine_log  what happened to quarantine entries (dropped, re-sent), with time and reason
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Literal

from sync import migrations
from sync.base import OutboxDamaged, OutboxError, OutboxFull

if TYPE_CHECKING:
    import aiosqlite

SCHEMA_VERSION = migrations.LATEST

_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    # seq is the rowid: appends go to the end of the b-tree, reads by seq range are index walks.
    (
        "CREATE TABLE IF NOT EXISTS events ("
        " seq INTEGER PRIMARY KEY, id TEXT NOT NULL, route TEXT NOT NULL,"
        " payload BLOB NOT NULL, created REAL NOT NULL, cum_bytes INTEGER NOT NULL)"
    ),
    "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    (
        "CREATE TABLE IF NOT EXISTS event_keys (kind TEXT NOT NULL, value TEXT NOT NULL,"
        " seq INTEGER NOT NULL)"
    ),
    "CREATE INDEX IF NOT EXISTS event_keys_by_key ON event_keys (kind, value)",
    # prune deletes keys by seq
    "CREATE INDEX IF NOT EXISTS event_keys_by_seq ON event_keys (seq)",
    (
        "CREATE TABLE IF NOT EXISTS cursors (dest TEXT PRIMARY KEY, seq INTEGER NOT NULL)"
        " WITHOUT ROWID"
    ),
    (
        "CREATE TABLE IF NOT EXISTS quarantine ("
        " dest TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, route TEXT NOT NULL,"
        " reason TEXT NOT NULL, time REAL NOT NULL, released INTEGER NOT NULL DEFAULT 0,"
        " PRIMARY KEY (dest, seq)) WITHOUT ROWID"
    ),
    # prune asks "is this seq quarantined anywhere"
    "CREATE INDEX IF NOT EXISTS quarantine_by_seq ON quarantine (seq)",
    (
        "CREATE TABLE IF NOT EXISTS quarantine_log ("
        " dest TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, route TEXT NOT NULL,"
        " action TEXT NOT NULL, reason TEXT NOT NULL, time REAL NOT NULL)"
    ),
    migrations.MIGRATION_LOG_DDL,
)

INSERT_EVENT = (
    "INSERT INTO events (seq, id, route, payload, created, cum_bytes) VALUES (?, ?, ?, ?, ?, ?)"
)
UPSERT_STATE = (
    "INSERT INTO state (key, value) VALUES (?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
INSERT_KEY = "INSERT INTO event_keys (kind, value, seq) VALUES (?, ?, ?)"
UPSERT_CURSOR = (
    "INSERT INTO cursors (dest, seq) VALUES (?, ?)"
    " ON CONFLICT (dest) DO UPDATE SET seq = excluded.seq"
)
UPSERT_QUARANTINE = (
    "INSERT INTO quarantine (dest, seq, id, route, reason, time, released)"
    " VALUES (?, ?, ?, ?, ?, ?, 0) ON CONFLICT (dest, seq) DO UPDATE SET"
    " reason = excluded.reason, time = excluded.time, released = 0"
)
LOG_QUARANTINE = (
    "INSERT INTO quarantine_log (dest, seq, id, route, action, reason, time)"
    " SELECT dest, seq, id, route, ?, ?, ? FROM quarantine WHERE dest = ? AND seq = ?"
)
ENVELOPE_COLUMNS = "seq, id, route, payload, created"
# Envelopes indexed under one key (kind, value), in seq order; LIMIT -1 means all.
LOOKUP = (
    "SELECT e.seq, e.id, e.route, e.payload, e.created FROM event_keys k"
    " JOIN events e ON e.seq = k.seq WHERE k.kind = ? AND k.value = ? ORDER BY e.seq LIMIT ?"
)
# cum_bytes before the first row after a cursor: backlog bytes = total - this
BASE_AFTER = (
    "SELECT cum_bytes - length(payload), created FROM events WHERE seq > ? ORDER BY seq LIMIT 1"
)


async def configure(
    conn: aiosqlite.Connection, *, synchronous: Literal["full", "normal"], reader: bool
) -> None:
    """Set the pragmas of one connection."""
    # WAL: the reader never blocks the writer nor the writer the reader, and a commit is one
    # sequential append to the WAL file (one fsync) instead of a rollback journal dance.
    await conn.execute("PRAGMA journal_mode = WAL")
    # FULL fsyncs the WAL at every commit, so an acknowledged append survives power loss;
    # NORMAL (opt-in) survives a process crash but may lose the last commits on power loss.
    await conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    # Checkpoints, a backup or an operator's sqlite3 shell may hold a lock for a moment:
    # wait for it instead of failing the append with SQLITE_BUSY.
    await conn.execute("PRAGMA busy_timeout = 5000")
    # Checkpoint every ~16 MB of WAL instead of the default ~4 MB: fewer checkpoint stalls in
    # the writer at high append rates, still a bounded WAL.
    await conn.execute("PRAGMA wal_autocheckpoint = 4000")
    # After a checkpoint, truncate a WAL that grew during a burst back to 64 MB.
    await conn.execute("PRAGMA journal_size_limit = 67108864")
    # Page cache: 16 MB for the writer (the b-tree interior and the tail it appends to); 4 MB
    # for the reader, which walks the events once in seq order per destination (a page it has
    # sent is not read again soon) and would otherwise hold 16 MB of sent pages while draining.
    await conn.execute(f"PRAGMA cache_size = {-4096 if reader else -16384}")
    if reader:
        # The reader must never write: one writer connection is the rule.
        await conn.execute("PRAGMA query_only = ON")


async def create(conn: aiosqlite.Connection) -> None:
    """Create the tables of a new file, or migrate an older file forward; refuse a newer one."""
    found = await migrations.stored_version(conn)
    if found is not None and found != SCHEMA_VERSION:
        if found > SCHEMA_VERSION:
            migrations.refuse_newer(found)
        await migrations.migrate(conn)
    await conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _DDL:
            await conn.execute(statement)
        rows = list(await conn.execute_fetchall("SELECT version FROM schema_version"))
        if not rows:
            await conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif int(rows[0][0]) != SCHEMA_VERSION:
            migrations.refuse_newer(int(rows[0][0]))
        await conn.execute("COMMIT")
    except BaseException:
        await conn.execute("ROLLBACK")
        raise


# SQLite's primary result codes that mean the file itself is damaged (extended codes carry
# the primary one in their low byte).
_DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def is_damage(exc: sqlite3.Error) -> bool:
    """Whether SQLite says the database file is damaged (not busy, not full, not I/O)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _DAMAGE_CODES


def translate(exc: sqlite3.Error) -> OutboxError:
    """Turn an SQLite error into the sync/ family (SQLITE_FULL is the disk-full refusal)."""
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return OutboxFull(f"outbox refused the event: the disk is full (SQLITE_FULL: {exc})")
    if is_damage(exc):
        return OutboxDamaged(f"outbox database damaged: {exc}")
    return OutboxError(f"outbox database error: {exc}")


async def integrity_problem(conn: aiosqlite.Connection) -> str | None:
    """`PRAGMA quick_check` of the whole file: the first problem it reports, or None.

    quick_check reads every page and checks the b-trees' structure (not index contents, which
    integrity_check adds at several times the cost): about 1 s per GB from a warm cache.
    """
    try:
        rows = list(await conn.execute_fetchall("PRAGMA quick_check(5)"))
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        return str(exc)  # a page so damaged the check itself stops
    found = [str(row[0]) for row in rows]
    return None if found == ["ok"] else "; ".join(found)
