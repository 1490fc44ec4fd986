"""The plant store as the agent's trace engine reads a history: every node's events, one site.

`PlantHistory` answers `lookup(kind, value)` — the `History` protocol of `agent.history` — from
`lineside.events` through the key indexes (`agent.plant.store`), so the trace, the report and
the reconciliation of `agent.history` answer across every node without a second copy of their
logic. Each row becomes the envelope its node rendered, with one change: the engine keys events
by `seq`, which is unique only within one node, so a row's `seq` is a plant-wide ordinal (in
time order, unique within one `PlantHistory`) and its node's own seq travels as `node_seq`.
`plant_trace` and `plant_report` put the node's seq back before answering (`restore_seqs`).
`lookup_many(..., routes=)` reads only the events of those routes (the engine asks so for a
lot's codes' shipments by serial, `agent.history.reconcile.lot_events`): the others stay in the
database.

Errors::

    PlantStoreError     the plant database cannot be reached or read
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import TYPE_CHECKING, Any

import psycopg

from agent.history.reports import lot_report
from agent.history.trace import trace
from agent.plant.store import events_by_key, events_by_keys, typed_events_by_keys
from sync.base import Envelope

if TYPE_CHECKING:
    from agent.plant.store import StoredEvent

LOOKUP_LIMIT = 2000  # as the agent's history: a popular key shows this many events, and says so
REPORT_LIMIT = 200_000  # a report is the whole chain: a lot's every event, up to this many a key

# The agent's lookup kinds, as the plant store's key indexes answer them.
_WITH_GTIN = {"gtin_lot": "lot", "serial": "serial"}
_PLAIN = frozenset({"trace_code", "sscc", "lot", "work_order", "batch"})


class PlantStoreError(Exception):
    """The plant database cannot be reached or read."""


def _lookup_failed(exc: psycopg.Error) -> PlantStoreError:
    """The error of a failed look-up; a schema older than this Lineside's says what to run."""
    if isinstance(exc, psycopg.errors.UndefinedFunction | psycopg.errors.UndefinedTable):
        return PlantStoreError(
            f"the plant database's schema is older than this Lineside ({exc}): run "
            "`lineside plant migrate`"
        )
    return PlantStoreError(f"the plant database failed a look-up: {exc}")


class PlantHistory:
    """Envelopes by lookup key from the plant store, for one site (one connection, one query)."""

    def __init__(
        self, conn: psycopg.AsyncConnection[Any], *, site: str, limit: int = LOOKUP_LIMIT
    ) -> None:
        self._conn = conn
        self._site = site
        self._limit = limit
        self._ordinals: dict[str, int] = {}
        self._built: dict[str, Envelope] = {}  # by id: a row found under several keys is built once
        self._found: dict[tuple[str, str], list[Envelope]] = {}
        self._typed: dict[tuple[str, str, frozenset[str]], list[Envelope]] = {}
        self.node_seqs: dict[int, int] = {}
        """Plant-wide ordinal → the node's own seq, for every event handed out."""
        self.truncated = False

    async def lookup(self, kind: str, value: str) -> list[Envelope]:
        """The events of the site indexed under (kind, value), oldest first (read once)."""
        found = self._found.get((kind, value))
        if found is None:
            found = self._found[kind, value] = await self._lookup(kind, value)
        return found

    async def lookup_many(
        self, kind: str, values: list[str], routes: frozenset[str] | None = None
    ) -> list[list[Envelope]]:
        """`lookup` of each of `values`, those not read yet in one query.

        With `routes`, only the events of those routes, and only those read (`typed_many`).
        """
        if routes is not None:
            return await self.typed_many(kind, values, routes)
        missing = [v for v in dict.fromkeys(values) if (kind, v) not in self._found]
        keys = [self._key(kind, v) for v in missing]
        uniform = len({gtin is None for _, gtin in keys}) == 1  # all narrowed by a GTIN, or none
        if len(missing) > 1 and uniform and (kind in _WITH_GTIN or kind in _PLAIN):
            try:
                rows = await events_by_keys(
                    self._conn,
                    _WITH_GTIN.get(kind, kind),
                    keys,
                    site=self._site,
                    limit=self._limit + 1,
                    data_text=True,
                )
            except psycopg.Error as exc:
                raise _lookup_failed(exc) from exc
            for value, found in zip(missing, rows, strict=True):
                self._found[kind, value] = self._envelopes(found)
        return [await self.lookup(kind, v) for v in values]

    async def typed_many(
        self, kind: str, values: list[str], types: frozenset[str]
    ) -> list[list[Envelope]]:
        """`lookup_many`'s answer with only the events of `types` kept, and only those read.

        The same envelopes `lookup_many` would give, less the others: each key's events are
        counted up to the limit (`truncated` is set as a whole look-up sets it), but an event
        of another type never leaves the database.
        """
        missing = [
            v
            for v in dict.fromkeys(values)
            if (kind, v) not in self._found and (kind, v, types) not in self._typed
        ]
        keys = [self._key(kind, v) for v in missing]
        if (
            missing
            and (kind in _WITH_GTIN or kind in _PLAIN)
            and len({g is None for _, g in keys}) == 1
        ):
            try:
                rows = await typed_events_by_keys(
                    self._conn,
                    _WITH_GTIN.get(kind, kind),
                    keys,
                    types,
                    site=self._site,
                    limit=self._limit + 1,
                    data_text=True,
                )
            except psycopg.Error as exc:
                raise _lookup_failed(exc) from exc
            for value, found in zip(missing, rows, strict=True):
                if len(found) > self._limit:
                    self.truncated = True
                kept = found[: self._limit]
                self._typed[kind, value, types] = [self._envelope(r) for r in kept if r]
        out = []
        for value in values:
            typed = self._typed.get((kind, value, types))
            if typed is None:  # read whole already (or a key the store does not index)
                typed = [e for e in await self.lookup(kind, value) if e.route in types]
            out.append(typed)
        return out

    @staticmethod
    def _key(kind: str, value: str) -> tuple[str, str | None]:
        if kind in _WITH_GTIN:
            gtin, _, key = value.partition("|")
            return key, gtin or None
        return value, None

    def _envelopes(self, rows: list[StoredEvent]) -> list[Envelope]:
        if len(rows) > self._limit:
            self.truncated = True
            rows = rows[: self._limit]
        return [self._envelope(row) for row in rows]

    async def _lookup(self, kind: str, value: str) -> list[Envelope]:
        if kind in _WITH_GTIN:
            gtin, _, key = value.partition("|")
            query = {"kind": _WITH_GTIN[kind], "value": key, "gtin": gtin or None}
        elif kind in _PLAIN:
            query = {"kind": kind, "value": value, "gtin": None}
        else:
            return []  # a key the plant store does not index (a bare GTIN)
        try:
            rows = await events_by_key(
                self._conn,
                query["kind"],  # type: ignore[arg-type]
                query["value"],  # type: ignore[arg-type]
                gtin=query["gtin"],
                site=self._site,
                limit=self._limit + 1,
                data_text=True,
            )
        except psycopg.Error as exc:
            raise _lookup_failed(exc) from exc
        return self._envelopes(rows)

    def _ordinal(self, row: StoredEvent) -> int:
        # time order: microseconds since the epoch, with room for 4096 events in the same one
        ordinal = self._ordinals.get(row.id)
        if ordinal is None:
            ordinal = int(row.time.timestamp() * 1_000_000) * 4096
            while ordinal in self.node_seqs:
                ordinal += 1
            self._ordinals[row.id] = ordinal
            self.node_seqs[ordinal] = row.seq
        return ordinal

    def _envelope(self, row: StoredEvent) -> Envelope:
        built = self._built.get(row.id)
        if built is not None:
            return built
        ordinal = self._ordinal(row)
        head = {
            "id": row.id,
            "type": row.type,
            # as `agent.events.format_time` writes it, in C: a trace reads hundreds of rows
            "time": row.time.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "site": row.site,
            "node": row.node,
            "seq": ordinal,
            "node_seq": row.seq,
            "source": row.source,
        }
        data = row.data if isinstance(row.data, str) else json.dumps(row.data)
        # the stored JSON text of `data` as it is: parsed once, by the trace engine. (Having
        # the database build the whole envelope's text instead saved this Python time but not
        # wall time: measured A/B, the answer's p50 and p99 did not move.)
        text = json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1] + ',"data":' + data
        payload = (text + "}").encode()
        built = self._built[row.id] = Envelope(
            ordinal, row.id, row.type, payload, created=row.stored.timestamp()
        )
        return built


def restore_seqs(value: Any, node_seqs: dict[int, int], nodes: set[str] | None = None) -> Any:
    """`value` with every plant-wide ordinal under a `seq` key put back to its node's seq.

    Every `node` named on the way is added to `nodes` (one walk of the answer, not two).
    """
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if key == "node_seq":
                continue
            if key == "seq" and isinstance(item, int) and item in node_seqs:
                out[key] = node_seqs[item]
            elif key == "node" and isinstance(item, str):
                out[key] = item
                if nodes is not None:
                    nodes.add(item)
            else:
                out[key] = restore_seqs(item, node_seqs, nodes)
        return out
    if isinstance(value, list):
        return [restore_seqs(item, node_seqs, nodes) for item in value]
    return value


async def plant_trace(
    conn: psycopg.AsyncConnection[Any], site: str, query: str
) -> dict[str, Any] | None:
    """The trace of `query` across every node of `site`; None when no node knows it."""
    history = PlantHistory(conn, site=site)
    result = await trace(history, query)
    if result is None:
        return None
    nodes: set[str] = set()
    restored: dict[str, Any] = restore_seqs(result, history.node_seqs, nodes)
    restored["site"] = site
    restored["nodes"] = sorted(nodes)
    return restored


async def plant_report(
    conn: psycopg.AsyncConnection[Any], site: str, lot: str
) -> dict[str, Any] | None:
    """The report of `lot` (`LOT` or `GTIN|LOT`) across every node; None when unknown."""
    history = PlantHistory(conn, site=site, limit=REPORT_LIMIT)
    result = await lot_report(history, lot)
    if result is None:
        return None
    result["site"] = site
    result["nodes"] = sorted({str(e.get("node")) for e in result["events"]})
    return restore_seqs(result, history.node_seqs)  # type: ignore[no-any-return]
