"""The durable outbox: one SQLite file, group-committed appends, one cursor per destination.

`Outbox` owns the database: ONE writer connection driven by an internal writer task (appends,
cursors, quarantine and retention all go through it, each in a transaction of its own, so a
caller being cancelled never cuts one in half) and one reader connection for publishers and
queries (the queries are its read side, `OutboxReader` in sync/outbox_reader.py). Appends that
arrive while a commit is in progress are committed together in the next transaction (group
commit), so concurrent appenders share one fsync. The cursors' bookkeeping between commits
(which moved, when they are due, each destination's generation) is `Cursors` in
sync/outbox_cursors.py; the outbox writes what it hands out.

Opening (sync/outbox_open.py) checks the file before anything is written to it: a missing or
emptied recorded file is refused (`OutboxMissing`) unless a new sequence is asked for, a
damaged one too (`OutboxDamaged`). While open, a database error is kept as the outbox's
`fault` (damage for good, any other error until the next successful commit) for the owner's
health check.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

from sync import retention, schema
from sync.base import (
    Draft,
    Envelope,
    OutboxClosed,
    OutboxError,
    OutboxFull,
)
from sync.group_commit import (
    PendingAppend,
    build_group,
    free_space_problem,
    most_bytes,
    run_transaction,
)
from sync.outbox_cursors import Cursors, Generation
from sync.outbox_open import open_outbox
from sync.outbox_reader import Backlog, OutboxReader
from sync.retention import PRUNE_BATCH

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence
    from types import TracebackType

    import aiosqlite

__all__ = ["Backlog", "Generation", "Outbox"]  # re-exported: publishers import them here

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(slots=True, eq=False)
class _Job:
    run: Callable[[aiosqlite.Connection], Awaitable[Any]]
    future: asyncio.Future[Any]


class Outbox(OutboxReader):
    """The durable, ordered store of envelopes and the delivery cursors of every destination.

    `async with Outbox(path) as outbox:` opens (creating the schema), and on exit drains the
    queued appends, persists the cursors and closes.
    """

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Literal["full", "normal"] = "full",
        max_backlog_bytes: int | None = None,
        min_free_bytes: int = 64 * 2**20,
        destinations: Sequence[str] = (),
        on_commit: Callable[[float, Sequence[str]], None] | None = None,
        labels: Mapping[str, str] | None = None,
        new_sequence: bool = False,
    ) -> None:
        """`on_commit(seconds, routes)` is told of each committed group (for metrics).

        `labels` go into the identity record (the agent's site and node). `new_sequence`
        allows starting anew, at seq 1, where the record says an outbox was and its file is
        missing or empty; it never replaces a file that is there.
        """
        if not isinstance(path, Path):
            raise TypeError(f"path must be a pathlib.Path, not {type(path).__name__}")
        if synchronous not in ("full", "normal"):
            raise ValueError(f'synchronous must be "full" or "normal", not {synchronous!r}')
        if max_backlog_bytes is not None and max_backlog_bytes <= 0:
            raise ValueError(f"max_backlog_bytes must be positive, not {max_backlog_bytes}")
        if min_free_bytes < 0:
            raise ValueError(f"min_free_bytes must not be negative, not {min_free_bytes}")
        if any(not isinstance(d, str) or not d for d in destinations):
            raise ValueError(f"destination names must be non-empty strings: {destinations!r}")
        super().__init__()
        self._path = path
        self._synchronous: Literal["full", "normal"] = synchronous
        self._max_backlog = max_backlog_bytes
        self._min_free = min_free_bytes
        self._on_commit = on_commit
        self._labels = dict(labels or {})
        self._new_sequence = new_sequence
        self.started_anew: str | None = None
        """Set when this open started a new sequence over a recorded outbox: what was lost."""
        self._writer: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._appends: list[PendingAppend] = []
        self._jobs: deque[_Job] = deque()
        self._wake = asyncio.Event()
        self._cursor_book = Cursors(destinations, persist_due=self._wake.set)
        self._cursors = self._cursor_book.seqs  # the reader's view of the same cursors
        # done at the next commit, rewind, release or close (created when someone waits)
        self._changed: asyncio.Future[None] | None = None
        self._closing = False
        self._base: tuple[int, int] | None = None  # (min cursor, cum bytes before its next row)
        self._state: dict[str, str] = {}
        self.commits = 0
        """Transactions that committed appended events (group commit makes it < appends)."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise OutboxError("an Outbox can be opened only once")
        opened = await open_outbox(
            self._path,
            synchronous=self._synchronous,
            labels=self._labels,
            new_sequence=self._new_sequence,
        )
        self._writer, self._reader = opened.writer, opened.reader
        self._state = opened.state
        self._cursor_book.load(opened.cursors)
        self._last_seq, self._cum = opened.last_seq, opened.cum
        self.started_anew = opened.started_anew
        self._task = asyncio.create_task(
            self._write_loop(), name=f"outbox-writer:{self._path.name}"
        )
        log.info(
            "outbox %s open: last seq %d, %d destination(s), integrity checked in %.1f s",
            self._path,
            self._last_seq,
            len(self._cursor_book.destinations),
            opened.checked_s,
        )
        recorded = opened.recorded
        if recorded is not None and any(recorded.get(k) != v for k, v in self._labels.items()):
            log.warning(
                "outbox %s was recorded for %s, now opened as %s: the sequence continues",
                self._path,
                {k: recorded.get(k) for k in self._labels},
                self._labels,
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        self._wake.set()
        try:
            if self._task is not None:
                # shielded: a cancelled shutdown still lets the last group commit finish
                await asyncio.shield(self._task)
        finally:
            self._notify()
            await self._close_connections()
            log.info("outbox %s closed at seq %d", self._path, self._last_seq)

    async def _close_connections(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    def _check_open(self) -> None:
        if self._task is None or self._closing or self._task.done():
            raise OutboxClosed("the outbox is closed")

    def _reader_conn(self) -> aiosqlite.Connection:
        self._check_open()
        return super()._reader_conn()

    def _notify(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)

    # -- appending ---------------------------------------------------------------------------

    async def append(self, draft: Draft) -> Envelope:
        """Store one event; return its envelope once the transaction is committed."""
        return (await self._submit((draft,)))[0]

    async def append_many(self, drafts: Sequence[Draft]) -> list[Envelope]:
        """Store several events in one transaction; return their envelopes once committed."""
        if not drafts:
            return []
        return await self._submit(tuple(drafts))

    async def _submit(self, drafts: Sequence[Draft]) -> list[Envelope]:
        self._check_open()
        future: asyncio.Future[list[Envelope]] = asyncio.get_running_loop().create_future()
        self._appends.append(PendingAppend(drafts, future))
        self._wake.set()
        # shielded: the commit completes or fails as a whole even if this caller is cancelled
        return await asyncio.shield(future)

    def beyond(
        self, seq: int, *, dest: str | None = None, generation: Generation | None = None
    ) -> asyncio.Future[None] | None:
        """None once an event after `seq` is committed (or `dest`'s generation moved on).

        Otherwise the future done at the outbox's next change (commit, rewind, release, close),
        shared by every waiter: await it through `asyncio.wait` or `asyncio.shield`, never
        cancel it. Waiting on it costs no task of its own. `OutboxClosed` when closed.
        """
        if self._last_seq > seq:
            return None
        if dest is not None and self.generation(dest) != generation:
            return None
        self._check_open()
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    async def wait_beyond(
        self, seq: int, *, dest: str | None = None, generation: Generation | None = None
    ) -> None:
        """Return once an event after `seq` is committed (or `dest`'s generation moved on)."""
        while (changed := self.beyond(seq, dest=dest, generation=generation)) is not None:
            await asyncio.shield(changed)

    # -- state -------------------------------------------------------------------------------

    def state(self, key: str) -> str | None:
        """The committed value of an application state key."""
        return self._state.get(key)

    def states(self, prefix: str) -> dict[str, str]:
        """All committed state keys starting with `prefix`."""
        return {k: v for k, v in self._state.items() if k.startswith(prefix)}

    async def put_state(self, values: Mapping[str, str]) -> None:
        """Commit application state without an event (e.g. "the PLC ended its handshake")."""
        items = list(values.items())

        async def run(conn: aiosqlite.Connection) -> None:
            await run_transaction(conn, [(schema.UPSERT_STATE, items)])
            self._state.update(items)

        await self._job(run)

    # -- cursors -----------------------------------------------------------------------------

    def generation(self, dest: str) -> Generation:
        """Counts of rewinds and releases of `dest`: a change means "look again"."""
        return self._cursor_book.generation(dest)

    def advance(self, dest: str, seq: int) -> None:
        """Move `dest`'s cursor forward to `seq`; persisted with the next commit or within 50 ms."""
        self._check_open()
        self._cursor_book.advance(dest, seq)

    async def rewind(self, dest: str, seq: int) -> None:
        """Set `dest`'s cursor back (or anywhere) to `seq` so it re-sends from there; persisted."""
        self._check_open()
        self._cursor_book.rewind(dest, seq)
        self._notify()
        log.info("destination %s rewound to seq %d", dest, seq)
        await self.flush()

    async def flush(self) -> None:
        """Persist the cursors now."""
        if self._cursor_book.moved:
            await self._job(self._persist_cursors_job)

    async def _persist_cursors_job(self, conn: aiosqlite.Connection) -> None:
        rows = self._cursor_book.take_moved()
        try:
            await run_transaction(conn, [(schema.UPSERT_CURSOR, rows)])
        except OutboxError:
            self._cursor_book.put_back(rows)
            raise

    async def _backlog_base(
        self, conn: aiosqlite.Connection, batch: Sequence[PendingAppend]
    ) -> int:
        """Payload bytes committed up to the smallest cursor, or a lower bound that will do.

        Cursors only move forward between rewinds, so the base read for an earlier smallest
        cursor is a lower bound of today's. While that bound already keeps `batch` within the
        limit, it is the answer: no query, no hand-over to the database thread for each commit
        (at line rates every event is its own commit). Read again (O(log n)) near the limit.
        """
        assert self._max_backlog is not None
        low = self._cursor_book.lowest()
        cached = self._base
        if cached is not None and cached[0] <= low:
            most = self._cum + most_bytes(batch)
            if cached[0] == low or most - cached[1] <= self._max_backlog:
                return cached[1]
        rows = list(await conn.execute_fetchall(schema.BASE_AFTER, (low,)))
        self._base = (low, int(rows[0][0]) if rows else self._cum)
        return self._base[1]

    # -- the writer --------------------------------------------------------------------------

    async def _job(self, run: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run `run` on the writer connection in the writer task (shielded from the caller)."""
        self._check_open()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(run, future))
        self._wake.set()
        return await asyncio.shield(future)

    async def _write_loop(self) -> None:
        conn = self._writer
        assert conn is not None
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._appends or self._cursor_book.moved:
                    await self._commit_group(conn)
                while self._jobs:
                    await self._run_job(conn, self._jobs.popleft())
                if self._closing and not self._appends and not self._jobs:
                    if self._cursor_book.moved:
                        await self._commit_group(conn)
                    return
        finally:
            closed = OutboxClosed("the outbox closed before this operation ran")
            for item in self._appends:
                item.future.set_exception(closed)
            for job in self._jobs:
                job.future.set_exception(closed)

    async def _run_job(self, conn: aiosqlite.Connection, job: _Job) -> None:
        try:
            result = await job.run(conn)
        except sqlite3.Error as exc:
            job.future.set_exception(self._database_error(exc))
        except OutboxError as exc:
            self._record_fault(exc)
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)

    async def _commit_group(self, conn: aiosqlite.Connection) -> None:
        batch, self._appends = self._appends, []
        problem = free_space_problem(self._path.parent, self._min_free) if batch else None
        if problem is not None:
            for item in batch:
                item.future.set_exception(OutboxFull(problem))
            batch = []
        base = await self._backlog_base(conn, batch) if batch and self._max_backlog else 0
        group = build_group(
            batch,
            last_seq=self._last_seq,
            cum=self._cum,
            base=base,
            max_backlog=self._max_backlog,
            now=time.time(),
        )
        cursors = self._cursor_book.take_moved()
        started = time.monotonic()
        try:
            await run_transaction(
                conn,
                [
                    (schema.INSERT_EVENT, group.events),
                    (schema.UPSERT_STATE, group.states),
                    (schema.INSERT_KEY, group.keys),
                    (schema.UPSERT_CURSOR, cursors),
                ],
            )
        except OutboxError as exc:
            self._cursor_book.put_back(cursors)
            self._record_fault(exc)
            group.fail(exc)
            return
        self._clear_fault()
        if group.events:
            self.commits += 1
            self._last_seq, self._cum = group.last_seq, group.cum
            self._state.update(group.states)
            self._remember(group.answer())
            self._notify()
            if self._on_commit is not None:
                self._on_commit(time.monotonic() - started, [row[2] for row in group.events])

    # -- quarantine --------------------------------------------------------------------------

    async def quarantine(self, dest: str, envelopes: Sequence[Envelope], reason: str) -> None:
        """Park envelopes `dest` refused for good, with the reason (replaces older entries)."""
        if not envelopes:
            return
        now = time.time()
        rows = [(dest, e.seq, e.id, e.route, reason, now) for e in envelopes]
        await self._job(lambda conn: run_transaction(conn, [(schema.UPSERT_QUARANTINE, rows)]))
        log.debug("destination %s quarantined %d event(s): %s", dest, len(rows), reason)

    async def release(self, dest: str, seq: int) -> bool:
        """Mark a quarantined event for re-sending (its publisher picks it up); False if absent."""
        found = await self._job(lambda conn: retention.mark_released(conn, dest, seq))
        if found:
            self._cursor_book.released(dest)
            self._notify()
        return found

    async def drop(self, dest: str, seq: int, *, reason: str = "dropped by operator") -> bool:
        """Remove an event from `dest`'s quarantine for good, logging when and why."""
        now = time.time()
        return await self._job(
            lambda conn: retention.remove_entries(
                conn, dest, [seq], action="dropped", reason=reason, now=now
            )
        )

    async def settle(self, dest: str, seqs: Sequence[int]) -> None:
        """Remove re-sent envelopes from `dest`'s quarantine (they were delivered)."""
        if seqs:
            now = time.time()
            await self._job(
                lambda conn: retention.remove_entries(
                    conn, dest, seqs, action="resent", reason="delivered", now=now
                )
            )

    # -- retention ---------------------------------------------------------------------------

    async def prune(self, older_than: float) -> int:
        """Delete events created before `older_than` that every destination has acknowledged.

        Quarantined events and the newest event (it carries the seq counter) are kept; with no
        destination known nothing counts as delivered. Batches of `PRUNE_BATCH` rows, each its
        own transaction, so appends go on in between.
        """
        total, start = 0, 0
        while self._cursor_book.destinations:
            seqs = await self._job(partial(self._prune_job, older_than=older_than, start=start))
            total += len(seqs)
            if len(seqs) < PRUNE_BATCH:
                break
            start = seqs[-1]
        if total:
            log.info("outbox pruned %d delivered event(s)", total)
        return total

    async def _prune_job(
        self, conn: aiosqlite.Connection, older_than: float, start: int
    ) -> list[int]:
        upto = min(self._cursor_book.lowest(), self._last_seq - 1)
        cursors = self._cursor_book.take_moved()
        try:
            seqs = await retention.prune_batch(
                conn, start=start, upto=upto, older_than=older_than, cursors=cursors
            )
        except BaseException:
            self._cursor_book.put_back(cursors)
            raise
        if seqs:
            self._tail.clear()  # a rewound reader must not find deleted events in memory
        return seqs
