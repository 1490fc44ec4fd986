"""The PostgreSQL destination: `PostgresSink` writes batches of events into `lineside.events`.

One `send` is one transaction: a single `INSERT … SELECT FROM unnest(…) ON CONFLICT (id, time)
DO NOTHING` of the whole batch (ids, seqs and payloads as three arrays, sent in binary), then
COMMIT; `send` returns after the COMMIT, so the publisher moves the cursor only over committed
events. A re-sent event (same id, same time: its payload is stored, never re-rendered) inserts
nothing. `window` is 1: one connection, batches committed in seq order.

The envelope format is a contract (CONTRACTS.md, "Event envelope"), so this module takes each
payload apart — and nothing else in sync/ does. It hands the payloads to the database as they
are stored (jsonb, binary) and the INSERT picks the columns out of them: parsing them in Python
first (json.loads, then `data` re-encoded) wrote 0.6 times as many events per second on the
same database. The row's `id` and `seq` are the outbox's own.

How failures map onto the sync/ error family:

- no connection, a connection lost, a server shutting down or restarting, a timeout, too many
  connections, a full disk (53100), a read-only database (25006), a missing table or grant
  (class 42: the schema is not migrated or the role lacks INSERT) and any other database error
  → `SinkUnavailable` naming the destination and the reason: the backlog grows, nothing is lost;
- a row the database refuses for its content — a payload that is not JSON or not an envelope
  (a field missing: NOT NULL; a bad time: a cast error), a constraint (data exceptions, class
  22; integrity constraints, class 23) → `SinkRejected` naming just those events: the batch is
  retried in halves inside savepoints to find them, and the others commit.

`link_lost` watches the idle connection's socket, so a server that goes away while the line is
quiet shows as down at once, not at the next event.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any, Self

import psycopg
from psycopg import errors, pq
from psycopg.types.json import Jsonb

from sync.base import SinkRejected, SinkUnavailable

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from sync.base import Envelope
    from sync.postgres_config import PostgresDestinationConfig

log = logging.getLogger(__name__)

TABLE = "lineside.events"
# The envelope is taken apart by the database: it parses the JSON once (it would parse `data`
# anyway), and Python neither decodes nor re-encodes it. A field missing or of the wrong type
# makes a NULL or a cast error, which the table's constraints refuse for that row alone.
INSERT = (
    f"INSERT INTO {TABLE} (id, site, node, seq, type, time, source, data, clock_synced) "  # noqa: S608
    "SELECT i, e->>'site', e->>'node', s, e->>'type', (e->>'time')::timestamptz, "
    "e->>'source', e->'data', (e->>'clock_synced')::boolean "
    "FROM unnest(%b::text[], %b::bigint[], %b::jsonb[]) AS u(i, s, e) "
    "ON CONFLICT (id, time) DO NOTHING"
)
# SQLSTATE classes of a row refused for its content: data exception, integrity constraint.
_ROW_CLASSES = ("22", "23")
_LIBPQ_PREAMBLE = re.compile(
    r'connection to server (at|on socket) "[^"]*"( \([^)]*\))?, port \d+ failed: '
)
_REASON_CHARS = 2000  # each refused event's own reason, up to this much
_SLACK_S = 5.0  # the client's own deadline beyond the server's statement_timeout


def one_line(exc: BaseException) -> str:
    """An exception's text on one line (libpq's messages span several)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    # the caller names the destination and its address: libpq's own preamble repeats it
    return _LIBPQ_PREAMBLE.sub("", text.removeprefix("connection failed: "))


def describe(exc: psycopg.Error) -> str:
    """Say in one line what the database answered, with a hint where the fix is known."""
    sqlstate = exc.sqlstate or ""
    primary = exc.diag.message_primary if exc.sqlstate else None
    reason = one_line(Exception(primary)) if primary else one_line(exc)
    if isinstance(exc, errors.ReadOnlySqlTransaction):
        return f"the database is read-only: {reason}"
    if isinstance(exc, errors.DiskFull):
        return f"the database's disk is full: {reason}"
    if isinstance(exc, errors.UndefinedTable):
        return f"{reason} (run `lineside plant migrate` on the plant database)"
    if isinstance(exc, errors.InsufficientPrivilege):
        return f"{reason} (grant the statements `lineside plant migrate` prints)"
    if isinstance(exc, errors.QueryCanceled):
        return f"timed out: {reason}"
    return f"{reason} ({sqlstate})" if sqlstate else reason


def is_row_error(exc: psycopg.Error) -> bool:
    """Whether the database refused a row for its content (not the link, not the schema)."""
    if exc.sqlstate is None:  # raised by psycopg while adapting a value (a NUL in text)
        return isinstance(exc, psycopg.DataError)
    if exc.sqlstate == errors.CheckViolation.sqlstate and "no partition" in str(exc):
        return False  # a partitioning gap is the schema's to fix (migrate), not the event's
    return exc.sqlstate.startswith(_ROW_CLASSES)


def rejection(refused: dict[str, str]) -> SinkRejected:
    """The error for events the database refused (id -> why), each named with its reason."""
    summary = f"the plant database refused {len(refused)} event(s)"
    if len(refused) == 1:
        ((ident, why),) = refused.items()
        return SinkRejected(summary, ids=[ident], detail=f"{ident}: {why}")
    detail = "; ".join(f"{ident}: {why}" for ident, why in refused.items())
    if len(detail) > _REASON_CHARS:
        detail = detail[: _REASON_CHARS - 1] + "…"
    return SinkRejected(summary, ids=list(refused), detail=detail)


def row_columns(batch: Sequence[Envelope]) -> tuple[list[Any], ...]:
    """The INSERT's parameters: the outbox's ids and seqs, and the payloads as JSON."""
    return (
        [e.id for e in batch],
        [e.seq for e in batch],
        [Jsonb(e.payload, dumps=bytes) for e in batch],  # the stored bytes, as they are
    )


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class PostgresSink:
    """Writes batches of envelopes into the plant database; `async with` owns the connection."""

    def __init__(self, config: PostgresDestinationConfig) -> None:
        self._config = config
        self._conn: psycopg.AsyncConnection[Any] | None = None

    @property
    def max_batch(self) -> int:
        """Most envelopes in one transaction."""
        return self._config.batch_size

    @property
    def window(self) -> int:
        """One transaction at a time, so that batches commit in seq order."""
        return 1

    def _fail(self, what: str) -> str:
        return f"{self._config.name}: {what}"

    async def __aenter__(self) -> Self:
        config = self._config
        target = config.target
        try:
            settings = await asyncio.to_thread(config.connect_kwargs)
        except OSError as exc:
            raise SinkUnavailable(self._fail(f"cannot read the password file: {exc}")) from exc
        try:
            # autocommit: each batch's `transaction()` is an explicit BEGIN … COMMIT, and no
            # implicit transaction is ever left open between batches
            conn = await psycopg.AsyncConnection.connect(
                config.dsn,
                autocommit=True,
                **settings,  # type: ignore[arg-type]  # libpq keywords
            )
        except psycopg.Error as exc:
            raise SinkUnavailable(
                self._fail(f"cannot connect to {target}: {one_line(exc)}")
            ) from exc
        try:
            await self._check_table(conn)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn
        log.debug("PostgreSQL destination %s connected to %s", config.name, target)
        return self

    async def _check_table(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Refuse to start on a database without the table, or a role that may not insert."""
        try:
            cur = await conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL "
                "AND has_table_privilege(to_regclass(%s), 'INSERT'), to_regclass(%s) IS NOT NULL",
                (TABLE, TABLE, TABLE),
            )
            row = await cur.fetchone()
        except psycopg.Error as exc:
            raise SinkUnavailable(self._fail(describe(exc))) from exc
        if row is None or not row[1]:
            raise SinkUnavailable(
                self._fail(
                    f"{self._config.target} has no table {TABLE}: run `lineside plant "
                    "migrate` on the plant database"
                )
            )
        if not row[0]:
            raise SinkUnavailable(
                self._fail(
                    f"the role may not INSERT into {TABLE}: grant the statements "
                    "`lineside plant migrate` prints"
                )
            )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def send(self, batch: Sequence[Envelope]) -> None:
        """Insert `batch` in one transaction; return after COMMIT."""
        if not batch:
            return
        conn = self._conn
        if conn is None or conn.closed:
            raise SinkUnavailable(self._fail("the PostgreSQL sink is not connected"))
        refused: dict[str, str] = {}  # id -> why
        try:
            async with asyncio.timeout(self._config.statement_timeout_s + _SLACK_S):
                inserted = await self._insert_all(conn, batch, refused)
        except TimeoutError as exc:
            raise SinkUnavailable(self._fail("no answer from the database (timeout)")) from exc
        except psycopg.Error as exc:
            raise SinkUnavailable(self._fail(describe(exc))) from exc
        log.debug(
            "PostgreSQL destination %s committed %d new of %d events (%d refused)",
            self._config.name,
            inserted,
            len(batch),
            len(refused),
        )
        if refused:
            raise rejection(refused)

    async def _insert_all(
        self,
        conn: psycopg.AsyncConnection[Any],
        rows: Sequence[Envelope],
        refused: dict[str, str],
    ) -> int:
        """Commit `rows` in one transaction; on a row error, find the bad rows and commit the rest.

        Returns the rows inserted (duplicates excluded); adds refused rows to `refused`.
        """
        try:
            async with conn.transaction():
                cur = await conn.execute(INSERT, row_columns(rows))
                return max(0, cur.rowcount)
        except psycopg.Error as exc:
            if not is_row_error(exc):
                raise
        inserted = 0
        async with conn.transaction():  # the good rows, found by halving inside savepoints
            pending = [list(rows)]
            while pending:
                part = pending.pop()
                try:
                    async with conn.transaction():
                        cur = await conn.execute(INSERT, row_columns(part))
                        inserted += max(0, cur.rowcount)
                except psycopg.Error as exc:
                    if not is_row_error(exc):
                        raise
                    if len(part) == 1:
                        refused[part[0].id] = describe(exc)
                    else:
                        middle = len(part) // 2
                        pending += [part[middle:], part[:middle]]
        return inserted

    async def link_lost(self) -> str:
        """Return (with the cause) once the idle connection is closed by the server or the net."""
        conn = self._conn
        if conn is None or conn.closed:
            return "not connected"
        pgconn = conn.pgconn
        loop = asyncio.get_running_loop()
        while True:
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(pgconn.socket, _settle, readable)
            try:
                await readable
            finally:
                loop.remove_reader(pgconn.socket)
            try:
                pgconn.consume_input()  # notices and parameter changes are read and dropped
            except psycopg.OperationalError as exc:
                return f"connection lost: {one_line(exc)}"
            if pgconn.status == pq.ConnStatus.BAD:
                message = pgconn.error_message.decode(errors="replace")
                return f"connection lost: {one_line(Exception(message))}"
            while pgconn.notifies() is not None:
                pass
