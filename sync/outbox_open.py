"""Opening an outbox file: its identity, its integrity, its schema and what it holds.

`open_outbox` checks the file before anything is written to it: a file recorded in the
directory's identity record (sync/outbox_identity.py) but now missing or empty is refused
(`OutboxMissing`) unless a new sequence is asked for; a file that fails `PRAGMA quick_check` is
refused (`OutboxDamaged`). It then creates the schema if needed, reads the committed state,
cursors and last seq, opens the reader connection and records the file's identity. On any
failure both connections are closed again. The `Outbox` owns what it returns.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import aiosqlite

from sync import outbox_identity, schema
from sync.base import OutboxDamaged

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


@dataclass(slots=True)
class OpenedOutbox:
    """The connections of an opened outbox file and what it held when opened."""

    writer: aiosqlite.Connection
    reader: aiosqlite.Connection
    state: dict[str, str]
    cursors: list[tuple[str, int]]
    last_seq: int = 0
    cum: int = 0
    checked_s: float = 0.0
    """How long the integrity check took."""
    recorded: dict[str, Any] | None = None
    """The identity record found before opening (None: a first open here)."""
    started_anew: str | None = None
    """Set when a new sequence was started over a recorded outbox: what was lost."""


async def _check_integrity(conn: aiosqlite.Connection, path: Path) -> None:
    problem = await schema.integrity_problem(conn)
    if problem is not None:
        raise OutboxDamaged(
            f"outbox {path} is damaged (integrity check: {problem}): restore it from"
            " a backup, or move it aside and start a new sequence deliberately"
        )


async def open_outbox(
    path: Path,
    *,
    synchronous: Literal["full", "normal"],
    labels: Mapping[str, str],
    new_sequence: bool,
) -> OpenedOutbox:
    """Open (creating if need be) the outbox file at `path`; see the module docstring."""
    recorded = outbox_identity.read_identity(path)
    started_anew = None
    if recorded is not None and outbox_identity.is_missing(path):
        started_anew = outbox_identity.start_anew(path, recorded, allowed=new_sequence)
    writer: aiosqlite.Connection | None = None
    reader: aiosqlite.Connection | None = None
    started = time.monotonic()
    try:
        writer = await aiosqlite.connect(path, isolation_level=None)
        await schema.configure(writer, synchronous=synchronous, reader=False)
        await _check_integrity(writer, path)
        checked_s = time.monotonic() - started
        await schema.create(writer)
        rows = await writer.execute_fetchall("SELECT key, value FROM state")
        state = {str(k): str(v) for k, v in rows}
        rows = await writer.execute_fetchall("SELECT dest, seq FROM cursors")
        cursors = [(str(d), int(s)) for d, s in rows]
        last_seq = cum = 0
        for row in await writer.execute_fetchall(
            "SELECT seq, cum_bytes FROM events ORDER BY seq DESC LIMIT 1"
        ):
            last_seq, cum = int(row[0]), int(row[1])
        reader = await aiosqlite.connect(path, isolation_level=None)
        await schema.configure(reader, synchronous=synchronous, reader=True)
        if recorded is None or started_anew is not None:
            rows = await writer.execute_fetchall("SELECT min(created) FROM events")
            outbox_identity.record(
                path, first_event=next(iter(rows))[0], labels=labels, previous=recorded
            )
    except BaseException as exc:
        for conn in (reader, writer):
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    await conn.close()
        if not isinstance(exc, sqlite3.Error):
            raise
        error = schema.translate(exc)
        if isinstance(error, OutboxDamaged):
            error = OutboxDamaged(f"outbox {path} is damaged ({exc}): restore it from a backup")
        raise error from exc
    return OpenedOutbox(
        writer,
        reader,
        state,
        cursors,
        last_seq,
        cum,
        checked_s,
        recorded,
        started_anew,
    )
