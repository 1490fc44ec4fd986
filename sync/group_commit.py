"""One group commit: seqs filled into payloads, the limits enforced, the transaction.

The outbox's writer task takes every append queued since its last commit and hands them here:
`build_group` gives each accepted draft the next gapless seq (written between the draft's
pre-encoded head and tail: no code of the appender's runs here) and refuses (per append, through
its future) what would break the backlog limit; `run_transaction` writes everything in ONE
transaction or nothing, so a failed commit leaves no gap in the seqs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sync import schema
from sync.base import Draft, Envelope, OutboxFull
from sync.faults import fault_point

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Iterable, Sequence
    from pathlib import Path

    import aiosqlite

log = logging.getLogger(__name__)

EventRow = tuple[int, str, str, bytes, float, int]


@dataclass(slots=True, eq=False)
class PendingAppend:
    """Drafts waiting for the next group commit, and the appender's future."""

    drafts: Sequence[Draft]
    future: asyncio.Future[list[Envelope]]


@dataclass(slots=True)
class Group:
    """The rows of one group commit and which appends they answer."""

    last_seq: int
    cum: int
    events: list[EventRow] = field(default_factory=list)
    states: list[tuple[str, str]] = field(default_factory=list)
    keys: list[tuple[str, str, int]] = field(default_factory=list)
    accepted: list[tuple[PendingAppend, int, int]] = field(default_factory=list)

    def answer(self) -> list[Envelope]:
        """Resolve the accepted appends with their envelopes (after the commit); all of them."""
        envelopes = [Envelope(*row[:5]) for row in self.events]
        for item, start, end in self.accepted:
            item.future.set_result(envelopes[start:end])
        return envelopes

    def fail(self, exc: BaseException) -> None:
        """Fail the accepted appends (the transaction did not commit)."""
        for item, _, _ in self.accepted:
            item.future.set_exception(exc)


def build_group(
    batch: Sequence[PendingAppend],
    *,
    last_seq: int,
    cum: int,
    base: int,
    max_backlog: int | None,
    now: float,
) -> Group:
    """Assign seqs and fill them into payloads; refuse appends that would exceed `max_backlog`.

    `cum` is the payload bytes committed so far, `base` those already delivered everywhere, so
    `cum - base` is the undelivered backlog.
    """
    group = Group(last_seq, cum)
    events = group.events
    for item in batch:
        start, seq, total = len(events), group.last_seq, group.cum
        for draft in item.drafts:
            seq += 1
            payload = draft.head + str(seq).encode() + draft.tail  # Draft.payload, inlined
            total += len(payload)
            events.append((seq, draft.id, draft.route, payload, now, total))
        if max_backlog is not None and total - base > max_backlog:
            del events[start:]
            item.future.set_exception(
                OutboxFull(
                    f"outbox refused the event: the undelivered backlog would be {total - base} "
                    f"bytes, over the limit of {max_backlog} bytes (max_backlog_bytes)"
                )
            )
            continue
        for draft, row in zip(item.drafts, events[start:], strict=True):
            group.states.extend(draft.state.items())
            group.keys.extend((kind, value, row[0]) for kind, value in draft.keys)
        group.last_seq, group.cum = seq, total
        group.accepted.append((item, start, len(events)))
    return group


def most_bytes(batch: Sequence[PendingAppend]) -> int:
    """At most the payload bytes `batch` adds (a seq has at most 20 digits)."""
    return sum(len(d.head) + len(d.tail) + 20 for item in batch for d in item.drafts)


def free_space_problem(directory: Path, min_free: int) -> str | None:
    """Why the disk under `directory` must not take more events, or None."""
    if min_free <= 0:
        return None
    try:
        stat = os.statvfs(directory)
    except OSError as exc:
        return f"outbox refused the event: cannot read the free space of {directory}: {exc}"
    free = stat.f_bavail * stat.f_frsize
    if free < min_free:
        return (
            f"outbox refused the event: {free // 2**20} MB free on {directory}, under the "
            f"{min_free // 2**20} MB minimum (min_free_bytes)"
        )
    return None


async def run_transaction(
    conn: aiosqlite.Connection, statements: Sequence[tuple[str, Iterable[tuple[Any, ...]]]]
) -> None:
    """Run each (sql, rows) with executemany in ONE transaction; roll back and translate errors.

    The whole transaction is one call on the connection's thread: one hand-over each way
    instead of one per statement, so a commit is not stretched by the event loop's other work
    between its statements (that latency, not the fsync, bounded the group commit's rate).
    """
    try:
        # aiosqlite has no public "run this on the connection's thread"
        await conn._execute(_transaction, conn._conn, statements)  # type: ignore[no-untyped-call]  # noqa: SLF001
    except sqlite3.Error as exc:
        log.warning("outbox transaction failed and was rolled back: %s", exc)
        raise schema.translate(exc) from exc


def _transaction(
    db: sqlite3.Connection, statements: Sequence[tuple[str, Iterable[tuple[Any, ...]]]]
) -> None:
    """On the connection's thread: BEGIN IMMEDIATE, the statements, COMMIT (or ROLLBACK)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in statements:
            db.executemany(sql, rows)
        fault_point("outbox.before_commit")
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
