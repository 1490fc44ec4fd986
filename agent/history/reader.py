"""Reading the event history the outbox keeps, for trace queries, reports and reconciliation.

`History` is what the trace engine needs: envelopes by lookup key (`event_keys`, filled from
each event's keys when it was committed). The running agent's `Outbox` is one; `HistoryReader`
is another: sync's `ReadOnlyOutbox` (its own READ-ONLY connection to the outbox file, so
`lineside trace` and the status page's trace queries can run while the agent is writing and can
never change or lock what it stores) with a per-key limit and the agent's error.

Errors::

    HistoryError        the history cannot be read (no outbox file, not an outbox, I/O error)
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol, Self

from sync.base import OutboxError
from sync.outbox_reader import ReadOnlyOutbox

if TYPE_CHECKING:
    from pathlib import Path

    from sync.base import Envelope

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


class HistoryReader(ReadOnlyOutbox):
    """A read-only view of an outbox file: `async with HistoryReader(path) as history:`.

    At most `limit` envelopes per key (`truncated` says when a lookup hit it); sync's errors
    become `HistoryError`.
    """

    def __init__(self, path: Path, *, limit: int = LOOKUP_LIMIT) -> None:
        super().__init__(path, limit=limit)

    async def __aenter__(self) -> Self:
        if not self._path.is_file():
            raise HistoryError(f"no event history at {self._path} (has the agent run here?)")
        try:
            return await super().__aenter__()
        except OutboxError as exc:
            raise HistoryError(f"cannot read the event history {self._path}: {exc}") from exc

    async def lookup(self, kind: str, value: str) -> list[Envelope]:
        """The envelopes indexed under (kind, value), oldest first, at most `limit`."""
        try:
            return await super().lookup(kind, value)
        except OutboxError as exc:
            raise HistoryError(f"history query failed: {exc}") from exc


async def lookup_each(
    history: History, kind: str, values: list[str], *, routes: frozenset[str] | None = None
) -> list[list[Envelope]]:
    """`history.lookup(kind, v)` for each of `values`, in order; with `routes`, only those.

    A history that can answer many keys at once (the plant store's `lookup_many`: one query
    instead of one round trip per key) is asked that way, and told `routes`, so that the events
    of other routes stay in its database; other histories' answers are filtered here.
    """
    many = getattr(history, "lookup_many", None)
    if many is not None and len(values) > 1:
        if routes is None:
            return await many(kind, values)  # type: ignore[no-any-return]
        return await many(kind, values, routes=routes)  # type: ignore[no-any-return]
    found = [await history.lookup(kind, value) for value in values]
    if routes is None:
        return found
    return [[e for e in envelopes if e.route in routes] for envelopes in found]


def envelope_json(envelope: Envelope) -> dict[str, Any]:
    """The envelope's JSON object (its `data` always a dict)."""
    value = json.loads(envelope.payload)
    if not isinstance(value, dict):
        raise HistoryError(f"event {envelope.seq} is not a JSON object")
    if not isinstance(value.get("data"), dict):
        value["data"] = {}
    return value
