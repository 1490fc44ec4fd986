"""The outbox's read side: queries on committed history, and a read-only view of an outbox file.

`OutboxReader` is what `Outbox` reads with, over its reader connection: the ordered,
route-filtered `read` a publisher drains, the newest events, one event by seq, envelopes by
lookup key, a destination's cursor, backlog and quarantine. `Outbox` inherits it and keeps the
committed state those queries are bounded by (last seq, byte total, cursors) current.

`ReadOnlyOutbox` opens an outbox file with a READ-ONLY connection of its own (`mode=ro`,
`query_only`) for lookups while another process writes it (WAL: readers never block the
writer); it can never change or lock what the outbox stores.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import deque
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Self

import aiosqlite

from sync import retention, schema
from sync.base import Envelope, OutboxClosed, OutboxDamaged, OutboxError, OutboxFull

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

    from sync.retention import QuarantineEntry

log = logging.getLogger(__name__)

BACKLOG_CACHE_S = 1.0
# A filtered read looks at most this many rows per requested envelope, so a destination that
# takes one rare route does not scan the whole backlog in one call; `scanned_to` says how far.
FILTER_SCAN_FACTOR = 20
# The newest committed envelopes kept in memory: a reader that is caught up (a publisher at line
# rate, the reconciler) reads what was just committed from here, without a trip to SQLite.
TAIL_EVENTS = 1024


@dataclass(frozen=True, slots=True)
class Backlog:
    """What a destination has not got yet: events, payload bytes, creation time of the oldest."""

    count: int
    bytes: int
    oldest_created: float | None


def _read_tail(
    tail: deque[Envelope], after: int, high: int, routes: frozenset[str] | None, limit: int
) -> tuple[list[Envelope], int]:
    """`OutboxReader.read` answered from the in-memory tail (which covers `after + 1 .. high`)."""
    start = after + 1 - tail[0].seq
    if routes is None:
        found = list(islice(tail, start, start + limit))
        return found, found[-1].seq if len(found) == limit else high
    upper = min(high, after + limit * FILTER_SCAN_FACTOR)
    found = []
    for envelope in islice(tail, start, start + upper - after):
        if envelope.route in routes:
            found.append(envelope)
            if len(found) == limit:
                break
    return found, found[-1].seq if len(found) == limit else upper


class OutboxReader:
    """Queries on an open outbox's committed history, over its reader connection.

    The subclass (`Outbox`) opens `_reader` and, as its writer commits, keeps `_last_seq` (the
    highest committed seq), `_cum` (payload bytes up to it) and `_cursors` current.
    """

    def __init__(self) -> None:
        self._reader: aiosqlite.Connection | None = None
        self._last_seq = 0
        self._cum = 0
        self._cursors: dict[str, int] = {}
        self._backlog_cache: dict[tuple[str, frozenset[str]], tuple[float, int, int, Backlog]] = {}
        self._fault: OutboxError | None = None
        # the newest committed envelopes, contiguous seqs ending at `_last_seq` (or empty)
        self._tail: deque[Envelope] = deque(maxlen=TAIL_EVENTS)

    def _reader_conn(self) -> aiosqlite.Connection:
        """The reader connection (the subclass adds its own "is it open" check)."""
        if self._reader is None:
            raise OutboxClosed("the outbox is closed")
        return self._reader

    @property
    def fault(self) -> str | None:
        """The database error that makes this outbox unhealthy now, or None.

        Damage (`OutboxDamaged`) stays until the outbox is closed; any other error (I/O, busy
        past the timeout) until the next successful commit. A full disk is not a fault: it is
        the overflow refusal, reported on its own.
        """
        return None if self._fault is None else str(self._fault)

    def _record_fault(self, error: OutboxError) -> None:
        if isinstance(error, OutboxFull | OutboxClosed):
            return
        if isinstance(self._fault, OutboxDamaged) and not isinstance(error, OutboxDamaged):
            return  # damage is the news that matters; it stays
        if self._fault is None or str(self._fault) != str(error):
            log.error("outbox fault: %s", error)
        self._fault = error

    def _clear_fault(self) -> None:
        if self._fault is not None and not isinstance(self._fault, OutboxDamaged):
            log.warning("outbox fault cleared (a commit succeeded): was %s", self._fault)
            self._fault = None

    def _database_error(self, exc: sqlite3.Error) -> OutboxError:
        """Translate an SQLite error into the sync/ family, recording it as the fault."""
        error = schema.translate(exc)
        self._record_fault(error)
        return error

    async def _fetch(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        """Rows of one query on the reader connection (errors translated and recorded)."""
        reader = self._reader_conn()
        try:
            return list(await reader.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise self._database_error(exc) from exc

    @property
    def last_seq(self) -> int:
        """The seq of the last committed event (0 when empty)."""
        return self._last_seq

    def cursor(self, dest: str) -> int:
        """The highest seq `dest` has acknowledged contiguously (0 for a new destination)."""
        return self._cursors.get(dest, 0)

    async def read(
        self, after: int, *, routes: frozenset[str] | None, limit: int
    ) -> tuple[list[Envelope], int]:
        """Committed envelopes after `after` in seq order (filtered by route) and `scanned_to`.

        `scanned_to` is the highest seq this read covered: a destination's cursor may move to
        it even when the rows in between are not routed to it.
        """
        self._reader_conn()  # raises OutboxClosed when closed
        high = self._last_seq  # committed, hence visible to the reader's next snapshot
        if after >= high or limit <= 0:
            return [], max(after, 0) if after < high else after
        if routes is not None and "*" in routes:
            routes = None
        tail = self._tail
        if tail and tail[0].seq <= after + 1 and tail[-1].seq == high:
            return _read_tail(tail, after, high, routes, limit)
        if routes is None:
            rows = await self._fetch(
                f"SELECT {schema.ENVELOPE_COLUMNS} FROM events"  # noqa: S608
                " WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                (after, high, limit),
            )
            upper = high
        else:
            upper = min(high, after + limit * FILTER_SCAN_FACTOR)
            marks = ",".join("?" * len(routes))
            rows = await self._fetch(
                f"SELECT {schema.ENVELOPE_COLUMNS} FROM events"  # noqa: S608
                f" WHERE seq > ? AND seq <= ? AND route IN ({marks}) ORDER BY seq LIMIT ?",
                (after, upper, *sorted(routes), limit),
            )
        scanned = int(rows[-1][0]) if len(rows) == limit else upper
        return [Envelope(*row) for row in rows], scanned

    def _remember(self, envelopes: list[Envelope]) -> None:
        """Keep a group's newly committed envelopes (contiguous after `_last_seq`) in the tail."""
        if self._tail and envelopes and self._tail[-1].seq + 1 != envelopes[0].seq:
            self._tail.clear()
        self._tail.extend(envelopes)

    async def recent(self, *, limit: int, routes: frozenset[str] | None = None) -> list[Envelope]:
        """The newest committed envelopes (of `routes`, if given), newest first."""
        if routes is None or "*" in routes:
            sql = f"SELECT {schema.ENVELOPE_COLUMNS} FROM events ORDER BY seq DESC LIMIT ?"  # noqa: S608
            params: tuple[object, ...] = (limit,)
        else:
            marks = ",".join("?" * len(routes))
            sql = (
                f"SELECT {schema.ENVELOPE_COLUMNS} FROM events"  # noqa: S608
                f" WHERE route IN ({marks}) ORDER BY seq DESC LIMIT ?"
            )
            params = (*sorted(routes), limit)
        rows = await self._fetch(sql, params)
        return [Envelope(*row) for row in rows]

    async def get(self, seq: int) -> Envelope | None:
        """The envelope with this seq, if retained."""
        rows = await self._fetch(
            f"SELECT {schema.ENVELOPE_COLUMNS} FROM events WHERE seq = ?",  # noqa: S608
            (seq,),
        )
        return Envelope(*rows[0]) if rows else None

    async def lookup(self, kind: str, value: str) -> list[Envelope]:
        """The retained envelopes indexed under the key (kind, value), in seq order."""
        rows = await self._fetch(schema.LOOKUP, (kind, value, -1))
        return [Envelope(*row) for row in rows]

    async def backlog(self, dest: str, routes: frozenset[str] | None = None) -> Backlog:
        """What `dest` (taking `routes`) has not acknowledged yet (filtered: cached for 1 s)."""
        self._reader_conn()  # raises OutboxClosed when closed
        after, high = self.cursor(dest), self._last_seq
        if after >= high:
            return Backlog(0, 0, None)
        if routes is None or "*" in routes:
            rows = await self._fetch(schema.BASE_AFTER, (after,))
            if not rows:
                return Backlog(0, 0, None)
            return Backlog(high - after, self._cum - int(rows[0][0]), float(rows[0][1]))
        key = (dest, routes)
        cached = self._backlog_cache.get(key)
        now = time.monotonic()
        if cached is not None and (
            cached[1:3] == (after, high) or now - cached[0] < BACKLOG_CACHE_S
        ):
            return cached[3]
        marks = ",".join("?" * len(routes))
        rows = await self._fetch(
            "SELECT count(*), coalesce(sum(length(payload)), 0), min(created) FROM events"  # noqa: S608
            f" WHERE seq > ? AND seq <= ? AND route IN ({marks})",
            (after, high, *sorted(routes)),
        )
        count, size, oldest = rows[0]
        result = Backlog(int(count), int(size), None if oldest is None else float(oldest))
        self._backlog_cache[key] = (now, after, high, result)
        return result

    async def quarantined(self, dest: str | None = None) -> list[QuarantineEntry]:
        """The quarantine of one destination, or of all, in (dest, seq) order."""
        try:
            return await retention.quarantine_entries(self._reader_conn(), dest)
        except sqlite3.Error as exc:
            raise self._database_error(exc) from exc

    async def released(self, dest: str) -> list[Envelope]:
        """Envelopes released from `dest`'s quarantine and waiting to be re-sent, in seq order."""
        try:
            return await retention.released_envelopes(self._reader_conn(), dest)
        except sqlite3.Error as exc:
            raise self._database_error(exc) from exc


class ReadOnlyOutbox:
    """A read-only view of an outbox file: `async with ReadOnlyOutbox(path) as outbox:`.

    `lookup` answers at most `limit` envelopes per key (all when None); `truncated` says
    whether one hit that limit (its answer is incomplete).
    """

    def __init__(self, path: Path, *, limit: int | None = None) -> None:
        if limit is not None and limit <= 0:
            raise ValueError(f"limit must be positive, not {limit}")
        self._path = path
        self._limit = limit
        self._conn: aiosqlite.Connection | None = None
        self.truncated = False
        """Whether a lookup hit the per-key limit (the answer is incomplete)."""

    async def __aenter__(self) -> Self:
        if not self._path.is_file():
            raise OutboxError(f"no outbox file at {self._path}")
        uri = f"{self._path.resolve().as_uri()}?mode=ro"
        try:
            self._conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
            # the writer may be checkpointing: wait for it rather than fail
            await self._conn.execute("PRAGMA busy_timeout = 5000")
            await self._conn.execute("PRAGMA query_only = ON")
            # fails at once on a file that is not an outbox
            await self._conn.execute_fetchall("SELECT 1 FROM event_keys LIMIT 1")
        except sqlite3.Error as exc:
            await self._close()
            raise schema.translate(exc) from exc
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def lookup(self, kind: str, value: str) -> list[Envelope]:
        """The envelopes indexed under (kind, value), oldest first, at most `limit`."""
        if self._conn is None:
            raise OutboxClosed("the read-only outbox is not open")
        # one more than the limit, to tell "exactly the limit" from "more"
        cap = -1 if self._limit is None else self._limit + 1
        try:
            rows = await self._conn.execute_fetchall(schema.LOOKUP, (kind, value, cap))
        except sqlite3.Error as exc:
            raise schema.translate(exc) from exc
        envelopes = [Envelope(*row) for row in rows]
        if self._limit is not None and len(envelopes) > self._limit:
            self.truncated = True
            log.warning(
                "more than %d events under one %s key; answering the first", self._limit, kind
            )
            del envelopes[self._limit :]
        return envelopes
