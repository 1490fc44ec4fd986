"""Reading the event history the outbox keeps, for trace queries, reports and reconciliation.

`History` is what the trace engine needs: envelopes by lookup key (`event_keys`, filled from
each event's keys when it was committed). The running agent's `Outbox` is one; `HistoryReader`
is another: its own READ-ONLY connection (`mode=ro`) to the outbox file, so `lineside trace`
and the status page's trace queries can run while the agent is writing (WAL: readers never
block the writer) and can never change or lock what the agent stores.

Errors::

    HistoryError        the history cannot be read (no outbox file, not an outbox, I/O error)
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import TYPE_CHECKING, Any, Protocol, Self

import aiosqlite

from sync.base import Envelope
from sync.schema import LOOKUP

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

log = logging.getLogger(__name__)

# One key (a popular material lot, a work order) may index very many events: a trace shows
# at most this many per key, and says so.
LOOKUP_LIMIT = 2000


class HistoryError(Exception):
    """The event history cannot be read."""


class History(Protocol):
    """Envelopes by lookup key, in seq order."""

    async def lookup(self, kind: str, value: str) -> list[Envelope]:
        """The retained envelopes indexed under (kind, value)."""
        ...


def outbox_path(data_dir: Path) -> Path:
    """Where the agent keeps its outbox (and so the history) under `agent.data_dir`."""
    return data_dir / "outbox.db"


class HistoryReader:
    """A read-only view of an outbox file: `async with HistoryReader(path) as history:`."""

    def __init__(self, path: Path, *, limit: int = LOOKUP_LIMIT) -> None:
        self._path = path
        self._limit = limit
        self._conn: aiosqlite.Connection | None = None
        self.truncated = False
        """Whether a lookup hit the per-key limit (the answer is incomplete)."""

    async def __aenter__(self) -> Self:
        if not self._path.is_file():
            raise HistoryError(f"no event history at {self._path} (has the agent run here?)")
        uri = f"{self._path.resolve().as_uri()}?mode=ro"
        try:
            self._conn = await aiosqlite.connect(uri, uri=True, isolation_level=None)
            # the agent may be checkpointing: wait for it rather than fail
            await self._conn.execute("PRAGMA busy_timeout = 5000")
            await self._conn.execute("PRAGMA query_only = ON")
            await self._conn.execute_fetchall("SELECT 1 FROM event_keys LIMIT 1")
        except sqlite3.Error as exc:
            await self._close()
            raise HistoryError(f"cannot read the event history {self._path}: {exc}") from exc
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
            raise HistoryError("the history reader is not open")
        try:
            rows = await self._conn.execute_fetchall(LOOKUP, (kind, value, self._limit + 1))
        except sqlite3.Error as exc:
            raise HistoryError(f"history query failed: {exc}") from exc
        envelopes = [Envelope(*row) for row in rows]
        if len(envelopes) > self._limit:
            self.truncated = True
            log.warning("trace: more than %d events under %s; showing the first", self._limit, kind)
            del envelopes[self._limit :]
        return envelopes


def envelope_json(envelope: Envelope) -> dict[str, Any]:
    """The envelope's JSON object (its `data` always a dict)."""
    value = json.loads(envelope.payload)
    if not isinstance(value, dict):
        raise HistoryError(f"event {envelope.seq} is not a JSON object")
    if not isinstance(value.get("data"), dict):
        value["data"] = {}
    return value
