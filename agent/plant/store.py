"""Reading the plant store: events by trace key, over every node, through the key indexes.

Each look-up uses exactly the expression its index is built on (`schema.KEY_EXPRESSIONS`), so
it is an index scan per monthly partition, whatever the table's size. A `serial` key with its
GTIN and a `lot` key without one also find the aggregation events whose item children carry
it (`schema.AGGREGATION_KEYS`, a second arm of the same query), as the agent's own history
indexes them: a batch's trace reaches the SSCCs it was packed into on any node. The trace, the
reports and the reconciliation of the plant view are built on these. `typed_events_by_keys`
is the many-key look-up for a caller that keeps one type of event: the others are listed in
their places but not sent (their columns stay in the database).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.plant.schema import (
    AGGREGATION_KEYS,
    AGGREGATION_PREDICATE,
    EVENTS,
    GTIN_EXPRESSION,
    KEY_EXPRESSIONS,
)

if TYPE_CHECKING:
    from collections.abc import Collection
    from datetime import datetime

    import psycopg

COLUMNS = "id, site, node, seq, type, time, source, data, clock_synced, stored"
TEXT_COLUMNS = COLUMNS.replace("data,", "data::text,")
_NAMES = [name.strip() for name in COLUMNS.split(",")]
DEFAULT_LIMIT = 10_000
_WITH_GTIN = frozenset({"lot", "serial"})


def aggregation_key(kind: str, value: str, gtin: str | None) -> str | None:
    """The `AGGREGATION_KEYS` entry that (kind, value, gtin) stands for, if any.

    As the agent indexes a pallet's item children: under `serial` with their GTIN, under `lot`
    without one (a GTIN+lot look-up does not reach aggregation events there either).
    """
    if kind == "serial" and gtin is not None:
        return f"serial:{gtin}|{value}"
    if kind == "lot" and gtin is None:
        return f"lot:{value}"
    return None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of lineside.events."""

    id: str
    site: str
    node: str
    seq: int
    type: str
    time: datetime
    source: str
    data: dict[str, Any] | str  # the JSON text when asked for with `data_text`
    clock_synced: bool | None
    stored: datetime


async def events_by_key(
    conn: psycopg.AsyncConnection[Any],
    kind: str,
    value: str,
    *,
    gtin: str | None = None,
    site: str | None = None,
    limit: int = DEFAULT_LIMIT,
    data_text: bool = False,
) -> list[StoredEvent]:
    """Events whose trace key `kind` (a `KEY_EXPRESSIONS` name) equals `value`, oldest first.

    `gtin` narrows a `lot` or `serial` key to one product (GS1: a lot or serial number is
    unique only within its GTIN); `site` to one site. With `data_text`, `data` is the JSON
    text as stored (for a caller that hands it on without looking into it).
    """
    try:
        expression = KEY_EXPRESSIONS[kind]
    except KeyError:
        raise ValueError(f"unknown trace key {kind!r}: one of {sorted(KEY_EXPRESSIONS)}") from None
    if gtin is not None and kind not in _WITH_GTIN:
        raise ValueError(f"a gtin narrows only lot and serial keys, not {kind!r}")
    where = [f"{expression} = %s"]
    params: list[object] = [value]
    if gtin is not None:
        where.append(f"{GTIN_EXPRESSION} = %s")
        params.append(gtin)
    if site is not None:
        where.append("site = %s")
        params.append(site)
    columns = TEXT_COLUMNS if data_text else COLUMNS
    query = f"SELECT {columns} FROM {EVENTS} WHERE {' AND '.join(where)}"  # noqa: S608
    children = aggregation_key(kind, value, gtin)
    if children is not None:  # a second arm: the pallets holding it (never the first's rows)
        query += (
            f" UNION ALL SELECT {columns} FROM {EVENTS} WHERE {AGGREGATION_PREDICATE}"  # noqa: S608
            f" AND {AGGREGATION_KEYS} @> ARRAY[%s]" + (" AND site = %s" if site is not None else "")
        )
        params += [children] + ([site] if site is not None else [])
    params.append(limit)
    cur = await conn.execute((query + " ORDER BY time, node, seq LIMIT %s").encode(), params)
    return [StoredEvent(*row) for row in await cur.fetchall()]


def _keys_query(
    kind: str, keys: list[tuple[str, str | None]], site: str | None, columns: str
) -> tuple[str, list[object], bool, dict[str | None, tuple[str, str | None]]]:
    """`events_by_keys`' query without ORDER BY and LIMIT, and what reading its rows needs.

    Its params; whether it is narrowed by GTIN; the aggregation keys of its second arm, each
    with the (value, gtin) it stands for.
    """
    expression = KEY_EXPRESSIONS.get(kind)
    if expression is None:
        raise ValueError(f"unknown trace key {kind!r}: one of {sorted(KEY_EXPRESSIONS)}")
    values = sorted({value for value, _ in keys})
    where = [f"{expression} = ANY(%s)"]
    params: list[object] = [values]
    gtins = {gtin for _, gtin in keys}
    narrowed = None not in gtins
    if narrowed:
        if kind not in _WITH_GTIN:
            raise ValueError(f"a gtin narrows only lot and serial keys, not {kind!r}")
        where.append(f"{GTIN_EXPRESSION} = ANY(%s)")
        params.append(sorted(g for g in gtins if g is not None))
    if site is not None:
        where.append("site = %s")
        params.append(site)
    query = (
        f"SELECT {columns}, {expression}, {GTIN_EXPRESSION}, NULL::text[] FROM {EVENTS} "  # noqa: S608
        f"WHERE {' AND '.join(where)}"
    )
    # the pallets holding any of them (second arm); each row goes to every key it carries
    children = {aggregation_key(kind, value, gtin): (value, gtin) for value, gtin in keys}
    children.pop(None, None)
    if children:
        query += (
            f" UNION ALL SELECT {columns}, NULL, NULL, {AGGREGATION_KEYS} FROM {EVENTS} "  # noqa: S608
            f"WHERE {AGGREGATION_PREDICATE} AND {AGGREGATION_KEYS} && %s::text[]"
            + (" AND site = %s" if site is not None else "")
        )
        params += [sorted(k for k in children if k is not None)]
        params += [site] if site is not None else []
    return query, params, narrowed, children


def _targets(
    row: tuple[Any, ...],
    narrowed: bool,  # noqa: FBT001
    children: dict[str | None, tuple[str, str | None]],
) -> list[tuple[str, str | None]]:
    """The (value, gtin) keys a row of `_keys_query` answers (its last three columns)."""
    value, gtin, held = row[-3], row[-2], row[-1]
    if held is None:
        return [(value, gtin if narrowed else None)]
    return [children[k] for k in held if k in children]


async def events_by_keys(
    conn: psycopg.AsyncConnection[Any],
    kind: str,
    keys: list[tuple[str, str | None]],
    *,
    site: str | None = None,
    limit: int = DEFAULT_LIMIT,
    data_text: bool = False,
) -> list[list[StoredEvent]]:
    """`events_by_key` of each (value, gtin) of `keys` in one query (`= ANY`, same indexes).

    At most `limit` events per key, oldest first; the answer lists one list per key, in order.
    """
    columns = TEXT_COLUMNS if data_text else COLUMNS
    query, params, narrowed, children = _keys_query(kind, keys, site, columns)
    params.append(limit * len(keys))
    cur = await conn.execute((query + " ORDER BY time, node, seq LIMIT %s").encode(), params)
    found: dict[tuple[str, str | None], list[StoredEvent]] = {key: [] for key in keys}
    for row in await cur.fetchall():
        for target in _targets(row, narrowed, children):
            bucket = found.get(target)
            if bucket is not None and len(bucket) < limit:
                bucket.append(StoredEvent(*row[:-3]))
    return [found[key] for key in keys]


async def typed_events_by_keys(
    conn: psycopg.AsyncConnection[Any],
    kind: str,
    keys: list[tuple[str, str | None]],
    types: Collection[str],
    *,
    site: str | None = None,
    limit: int = DEFAULT_LIMIT,
    data_text: bool = False,
) -> list[list[StoredEvent | None]]:
    """`events_by_keys`, with only the events of `types` read: the others are None.

    Each key's list holds the same events in the same places as `events_by_keys`' (at most
    `limit`, oldest first), so a caller truncates as it would; an event of another type is
    counted there but not sent (its columns stay in the database).
    """
    inner, params, narrowed, children = _keys_query(
        kind, keys, site, TEXT_COLUMNS if data_text else COLUMNS
    )
    read = ", ".join(f"CASE WHEN wanted THEN {name} END" for name in _NAMES)
    query = (
        f"SELECT wanted, {read}, key_, gtin_, held_ FROM (SELECT *, type = ANY(%s) AS wanted "  # noqa: S608
        f"FROM ({inner} ORDER BY time, node, seq LIMIT %s) AS hits ({', '.join(_NAMES)}, "
        "key_, gtin_, held_)) AS typed ORDER BY time, node, seq"
    )
    params = [sorted(types), *params, limit * len(keys)]
    cur = await conn.execute(query.encode(), params)
    found: dict[tuple[str, str | None], list[StoredEvent | None]] = {key: [] for key in keys}
    for row in await cur.fetchall():
        for target in _targets(row, narrowed, children):
            bucket = found.get(target)
            if bucket is not None and len(bucket) < limit:
                bucket.append(StoredEvent(*row[1:-3]) if row[0] else None)
    return [found[key] for key in keys]
