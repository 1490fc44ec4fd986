"""The durable outbox: one SQLite file, group-committed appends, one cursor per destination.

`Outbox` owns the database: ONE writer connection driven by an internal writer task (appends,
cursors, quarantine and retention all go through it, each in a transaction of its own, so a
caller being cancelled never cuts one in half) and one reader connection for publishers and
queries (the queries are its read side, `OutboxReader` in sync/outbox_reader.py). Appends that
arrive while a commit is in progress are committed together in the next transaction (group
commit), so concurrent appenders share one fsync.
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
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Self, TypeVar

import aiosqlite

from sync import retention, schema
from sync.base import Draft, Envelope, OutboxClosed, OutboxError, OutboxFull
from sync.group_commit import PendingAppend, build_group, free_space_problem, run_transaction
from sync.outbox_reader import Backlog, OutboxReader
from sync.retention import PRUNE_BATCH

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence
    from types import TracebackType

__all__ = ["Backlog", "Generation", "Outbox"]  # Backlog re-exported: publishers import it here

log = logging.getLogger(__name__)

T = TypeVar("T")

CURSOR_PERSIST_DELAY_S = 0.05


class Generation(NamedTuple):
    """How often a destination's cursor was rewound and its quarantine released (wake-ups)."""

    rewinds: int
    releases: int


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
    ) -> None:
        """`on_commit(seconds, routes)` is told of each committed group (for metrics)."""
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
        self._dests: set[str] = set(destinations)
        self._on_commit = on_commit
        self._writer: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._appends: list[PendingAppend] = []
        self._jobs: deque[_Job] = deque()
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._closing = False
        self._base: tuple[int, int] | None = None  # (min cursor, cum bytes before its next row)
        self._state: dict[str, str] = {}
        self._dirty: set[str] = set()
        self._persist_timer: asyncio.TimerHandle | None = None
        self._generations: dict[str, Generation] = {}
        self.commits = 0
        """Transactions that committed appended events (group commit makes it < appends)."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise OutboxError("an Outbox can be opened only once")
        try:
            self._writer = await aiosqlite.connect(self._path, isolation_level=None)
            await schema.configure(self._writer, synchronous=self._synchronous, reader=False)
            await schema.create(self._writer)
            w = self._writer
            rows = await w.execute_fetchall("SELECT key, value FROM state")
            self._state = {str(k): str(v) for k, v in rows}
            rows = await w.execute_fetchall("SELECT dest, seq FROM cursors")
            self._cursors = {str(d): int(s) for d, s in rows}
            self._dests.update(self._cursors)
            for row in await w.execute_fetchall(
                "SELECT seq, cum_bytes FROM events ORDER BY seq DESC LIMIT 1"
            ):
                self._last_seq, self._cum = int(row[0]), int(row[1])
            self._reader = await aiosqlite.connect(self._path, isolation_level=None)
            await schema.configure(self._reader, synchronous=self._synchronous, reader=True)
        except sqlite3.Error as exc:
            await self._close_connections()
            raise schema.translate(exc) from exc
        except BaseException:
            await self._close_connections()
            raise
        self._task = asyncio.create_task(
            self._write_loop(), name=f"outbox-writer:{self._path.name}"
        )
        log.info(
            "outbox %s open: last seq %d, %d destination(s)",
            self._path,
            self._last_seq,
            len(self._dests),
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
        self._changed.set()
        self._changed = asyncio.Event()

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

    async def wait_beyond(
        self, seq: int, *, dest: str | None = None, generation: Generation | None = None
    ) -> None:
        """Return once an event after `seq` is committed (or `dest`'s generation moved on)."""
        while True:
            changed = self._changed
            if self._last_seq > seq:
                return
            if dest is not None and self.generation(dest) != generation:
                return
            self._check_open()
            await changed.wait()

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
        return self._generations.get(dest, Generation(0, 0))

    def advance(self, dest: str, seq: int) -> None:
        """Move `dest`'s cursor forward to `seq`; persisted with the next commit or within 50 ms."""
        self._check_open()
        self._dests.add(dest)
        if seq <= self._cursors.get(dest, 0):
            return
        self._cursors[dest] = seq
        self._dirty.add(dest)
        if self._persist_timer is None:
            self._persist_timer = asyncio.get_running_loop().call_later(
                CURSOR_PERSIST_DELAY_S, self._wake.set
            )

    async def rewind(self, dest: str, seq: int) -> None:
        """Set `dest`'s cursor back (or anywhere) to `seq` so it re-sends from there; persisted."""
        self._check_open()
        if seq < 0:
            raise ValueError(f"a cursor cannot be negative: {seq}")
        self._dests.add(dest)
        self._cursors[dest] = seq
        self._dirty.add(dest)
        rewinds, releases = self.generation(dest)
        self._generations[dest] = Generation(rewinds + 1, releases)
        self._notify()
        log.info("destination %s rewound to seq %d", dest, seq)
        await self.flush()

    async def flush(self) -> None:
        """Persist the cursors now."""
        if self._dirty:
            await self._job(self._persist_cursors_job)

    def _take_dirty(self) -> list[tuple[str, int]]:
        if self._persist_timer is not None:
            self._persist_timer.cancel()
            self._persist_timer = None
        rows = [(d, self._cursors[d]) for d in self._dirty]
        self._dirty.clear()
        return rows

    async def _persist_cursors_job(self, conn: aiosqlite.Connection) -> None:
        rows = self._take_dirty()
        try:
            await run_transaction(conn, [(schema.UPSERT_CURSOR, rows)])
        except OutboxError:
            self._dirty.update(d for d, _ in rows)
            raise

    def _min_cursor(self) -> int:
        return min((self._cursors.get(d, 0) for d in self._dests), default=0)

    async def _backlog_base(self, conn: aiosqlite.Connection) -> int:
        """Payload bytes committed up to the smallest cursor (O(log n), cached per cursor)."""
        low = self._min_cursor()
        if self._base is None or self._base[0] != low:
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
                if self._appends or self._dirty:
                    await self._commit_group(conn)
                while self._jobs:
                    await self._run_job(conn, self._jobs.popleft())
                if self._closing and not self._appends and not self._jobs:
                    if self._dirty:
                        await self._commit_group(conn)
                    return
        finally:
            closed = OutboxClosed("the outbox closed before this operation ran")
            for item in self._appends:
                item.future.set_exception(closed)
            for job in self._jobs:
                job.future.set_exception(closed)

    @staticmethod
    async def _run_job(conn: aiosqlite.Connection, job: _Job) -> None:
        try:
            result = await job.run(conn)
        except sqlite3.Error as exc:
            job.future.set_exception(schema.translate(exc))
        except OutboxError as exc:
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
        base = await self._backlog_base(conn) if batch and self._max_backlog is not None else 0
        group = build_group(
            batch,
            last_seq=self._last_seq,
            cum=self._cum,
            base=base,
            max_backlog=self._max_backlog,
            now=time.time(),
        )
        cursors = self._take_dirty()
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
            self._dirty.update(d for d, _ in cursors)
            group.fail(exc)
            return
        if group.events:
            self.commits += 1
            self._last_seq, self._cum = group.last_seq, group.cum
            self._state.update(group.states)
            group.answer()
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
        log.warning("destination %s quarantined %d event(s): %s", dest, len(rows), reason)

    async def release(self, dest: str, seq: int) -> bool:
        """Mark a quarantined event for re-sending (its publisher picks it up); False if absent."""
        found = await self._job(lambda conn: retention.mark_released(conn, dest, seq))
        if found:
            rewinds, releases = self.generation(dest)
            self._generations[dest] = Generation(rewinds, releases + 1)
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
        while self._dests:
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
        upto = min(self._min_cursor(), self._last_seq - 1)
        cursors = self._take_dirty()
        try:
            return await retention.prune_batch(
                conn, start=start, upto=upto, older_than=older_than, cursors=cursors
            )
        except BaseException:
            self._dirty.update(d for d, _ in cursors)
            raise
