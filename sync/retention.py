"""The outbox's quarantine bookkeeping and retention: SQL run by the outbox's writer task.

Quarantine entries are per destination; what happens to them (dropped by an operator, re-sent
after a release) is recorded in `quarantine_log`. Retention deletes only events every
destination has acknowledged, never quarantined ones, in batches so appends go on in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sync import schema
from sync.base import Envelope
from sync.group_commit import run_transaction

if TYPE_CHECKING:
    from collections.abc import Sequence

    import aiosqlite

PRUNE_BATCH = 5000


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """An event one destination refused for good, and why (`released`: waiting to re-send)."""

    dest: str
    seq: int
    id: str
    route: str
    reason: str
    time: float
    released: bool


async def quarantine_entries(
    reader: aiosqlite.Connection, dest: str | None
) -> list[QuarantineEntry]:
    """The quarantine of one destination, or of all, in (dest, seq) order."""
    sql = "SELECT dest, seq, id, route, reason, time, released FROM quarantine"
    args: tuple[str, ...] = ()
    if dest is not None:
        sql, args = sql + " WHERE dest = ?", (dest,)
    rows = await reader.execute_fetchall(sql + " ORDER BY dest, seq", args)
    return [QuarantineEntry(d, s, i, r, why, t, bool(rel)) for d, s, i, r, why, t, rel in rows]


async def released_envelopes(reader: aiosqlite.Connection, dest: str) -> list[Envelope]:
    """Envelopes released from `dest`'s quarantine, waiting to be re-sent, in seq order."""
    rows = await reader.execute_fetchall(
        "SELECT e.seq, e.id, e.route, e.payload, e.created FROM quarantine q"
        " JOIN events e ON e.seq = q.seq WHERE q.dest = ? AND q.released = 1 ORDER BY q.seq",
        (dest,),
    )
    return [Envelope(*row) for row in rows]


async def mark_released(conn: aiosqlite.Connection, dest: str, seq: int) -> bool:
    """Flag one entry for re-sending; False if `dest` has no such entry."""
    before = conn.total_changes
    await run_transaction(
        conn, [("UPDATE quarantine SET released = 1 WHERE dest = ? AND seq = ?", [(dest, seq)])]
    )
    return conn.total_changes > before


async def remove_entries(
    conn: aiosqlite.Connection,
    dest: str,
    seqs: Sequence[int],
    *,
    action: str,
    reason: str,
    now: float,
) -> bool:
    """Log and delete entries of `dest`'s quarantine; False if none existed."""
    before = conn.total_changes
    await run_transaction(
        conn,
        [
            (schema.LOG_QUARANTINE, [(action, reason, now, dest, s) for s in seqs]),
            ("DELETE FROM quarantine WHERE dest = ? AND seq = ?", [(dest, s) for s in seqs]),
        ],
    )
    return conn.total_changes > before


async def prune_batch(
    conn: aiosqlite.Connection,
    *,
    start: int,
    upto: int,
    older_than: float,
    cursors: Sequence[tuple[str, int]],
) -> list[int]:
    """Delete up to PRUNE_BATCH old events in (start, upto] not in any quarantine.

    The cursors that allow the delete are written in the same transaction, so the database
    never holds a cursor older than what it has already deleted.
    """
    rows = await conn.execute_fetchall(
        "SELECT seq FROM events WHERE seq > ? AND seq <= ? AND created < ?"
        " AND seq NOT IN (SELECT seq FROM quarantine) ORDER BY seq LIMIT ?",
        (start, upto, older_than, PRUNE_BATCH),
    )
    seqs = [(int(r[0]),) for r in rows]
    await run_transaction(
        conn,
        [
            (schema.UPSERT_CURSOR, cursors),
            ("DELETE FROM events WHERE seq = ?", seqs),
            ("DELETE FROM event_keys WHERE seq = ?", seqs),
        ],
    )
    return [s for (s,) in seqs]
