"""The fleet: every node of the site seen in the store or on the broker, and how complete it is.

Per node (`GET /api/fleet`, CONTRACTS.md): `online` (its retained state; None when the broker
is not followed or the node never published one), `last_seen` (the newest of its newest stored
event and its newest state document), `stored_seq` (the highest seq with no gap below it),
`gaps` (the missing seq ranges, `[first, last]` each: from 1, or from just above the node's
highest seq that retention dropped (`lineside.retention_floor`: retention drops the oldest
months whole, on purpose), to its newest stored one, the last one up to the node's `last_seq`
when its health says nothing is left to deliver — meaningful for a destination routed
`types = ["*"]` only, as other routes skip seqs by design), `lag_s` (how long the newest stored
event took from its making to the store), and from the agent's `health`: `backlog` per
destination, `alarms`, `devices`, `last_seq`.

`stored_nodes` reads it all in one pass over the `(site, node, seq)` index (a window over
seq): about one index scan of the site. `FleetSummaries` (what `GET /api/fleet` uses: the page
polls every 5 s) keeps each node's summary between requests and reads only what can have
changed: rows above the node's highest stored seq, rows inside its known gaps, its lowest seq
(retention drops old months whole), the retention floors and the list of nodes (a skip scan
of the index). Rows
deleted by hand below the top are seen at the node's next full read, at most `recheck_s`
(`plant.fleet_recheck_s`, 60 s) later; so are re-used seqs of an outbox started anew. A node
lists at most `MAX_GAPS` ranges.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg

from agent.events import format_time
from agent.plant.history import PlantStoreError
from agent.plant.schema import EVENTS, RETENTION_FLOOR

if TYPE_CHECKING:
    from agent.plant.broker import NodeStates

MAX_GAPS = 100
RECHECK_S = 60.0

_NODES = f"""
SELECT node, min(seq), max(seq), max(time), max(stored),
       (array_agg(extract(epoch FROM stored - time) ORDER BY seq DESC))[1]
FROM {EVENTS} WHERE site = %s GROUP BY node
"""  # noqa: S608
_FLOORS = f"SELECT node, seq FROM {RETENTION_FLOOR} WHERE site = %s"  # noqa: S608
_GAPS = f"""
SELECT node, seq + 1, next - 1 FROM (
    SELECT node, seq, lead(seq) OVER (PARTITION BY node ORDER BY seq) AS next
    FROM {EVENTS} WHERE site = %s
) t WHERE next > seq + 1 ORDER BY node, seq
"""  # noqa: S608


async def stored_nodes(conn: psycopg.AsyncConnection[Any], site: str) -> dict[str, dict[str, Any]]:
    """What the store holds of each node of `site`: seq range, gaps, newest times, lag."""
    cur = await conn.execute(_NODES.encode(), (site,))
    nodes: dict[str, dict[str, Any]] = {}
    for node, low, high, newest, stored, lag in await cur.fetchall():
        nodes[node] = {
            "first_seq": int(low),
            "max_seq": int(high),
            "newest_event": newest,
            "newest_stored": stored,
            "lag_s": None if lag is None else round(float(lag), 3),
            "gaps": [],
        }
    cur = await conn.execute(_GAPS.encode(), (site,))
    for node, first, last in await cur.fetchall():
        gaps = nodes[node]["gaps"]
        if len(gaps) < MAX_GAPS:
            gaps.append([int(first), int(last)])
    floors = await _floors(conn, site)
    for node, entry in nodes.items():
        entry["gaps"] = below_lowest(entry["first_seq"], entry["gaps"], floors.get(node, 0))
    return nodes


async def _floors(conn: psycopg.AsyncConnection[Any], site: str) -> dict[str, int]:
    """Each node's highest seq retention dropped (`partitions.maintain` records it)."""
    try:
        cur = await conn.execute(_FLOORS.encode(), (site,))
    except psycopg.errors.UndefinedTable as exc:  # schema version 3 is not there yet
        raise PlantStoreError(
            f"the plant database's schema is older than this Lineside ({exc}): run "
            "`lineside plant migrate`"
        ) from exc
    return {str(node): int(seq) for node, seq in await cur.fetchall()}


def below_lowest(first_seq: int, gaps: list[list[int]], floor: int) -> list[list[int]]:
    """`gaps` with the seqs missing below the lowest stored one (`first_seq`), from `floor` + 1.

    Seqs up to `floor` were dropped by retention: never a gap. At most `MAX_GAPS` ranges.
    """
    missing = _merged([[1, first_seq - 1], *gaps]) if first_seq > 1 else gaps
    return [[max(a, floor + 1), b] for a, b in missing if b > floor][:MAX_GAPS]


# the nodes of a site: one index probe per node (a skip scan), not a pass over every row
_NODE_NAMES = f"""
WITH RECURSIVE n(node) AS (
    (SELECT node FROM {EVENTS} WHERE site = %(site)s ORDER BY node LIMIT 1)
    UNION ALL
    SELECT (SELECT node FROM {EVENTS} WHERE site = %(site)s AND node > n.node
            ORDER BY node LIMIT 1)
    FROM n WHERE n.node IS NOT NULL
) SELECT node FROM n WHERE node IS NOT NULL
"""  # noqa: S608
# one node's rows from `seq` up: their range, newest store time, the top row's lag, the gaps
_RANGE = f"""
SELECT min(seq), max(seq), max(stored),
       (array_agg(extract(epoch FROM stored - time) ORDER BY seq DESC))[1]
FROM {EVENTS} WHERE site = %(site)s AND node = %(node)s AND seq >= %(seq)s
"""  # noqa: S608
_RANGE_GAPS = f"""
SELECT seq + 1, next - 1 FROM (
    SELECT seq, lead(seq) OVER (ORDER BY seq) AS next
    FROM {EVENTS} WHERE site = %(site)s AND node = %(node)s AND seq >= %(seq)s
) t WHERE next > seq + 1 ORDER BY seq LIMIT %(limit)s
"""  # noqa: S608
_FIRST = f"SELECT min(seq) FROM {EVENTS} WHERE site = %(site)s AND node = %(node)s"  # noqa: S608
# the rows that arrived inside known gaps (late, or re-sent)
_IN_GAPS = f"""
SELECT e.seq, e.stored FROM unnest(%(low)s::bigint[], %(high)s::bigint[]) AS g(low, high)
JOIN LATERAL (
    SELECT seq, stored FROM {EVENTS}
    WHERE site = %(site)s AND node = %(node)s AND seq BETWEEN g.low AND g.high
) e ON true
"""  # noqa: S608


@dataclass
class _Summary:
    """What the store holds of one node, as `stored_nodes` gives it, and when it was read whole."""

    first_seq: int
    max_seq: int
    newest_stored: datetime | None
    lag_s: float | None
    gaps: list[list[int]]  # from seq 1, below `first_seq` too
    read_whole: float

    def entry(self, floor: int) -> dict[str, Any]:
        return {
            "first_seq": self.first_seq,
            "max_seq": self.max_seq,
            "newest_stored": self.newest_stored,
            "lag_s": self.lag_s,
            "gaps": below_lowest(self.first_seq, self.gaps, floor),
        }


class FleetSummaries:
    """`stored_nodes`, kept per node between requests and brought up to date incrementally."""

    def __init__(self, *, recheck_s: float = RECHECK_S) -> None:
        self._recheck_s = recheck_s
        self._nodes: dict[tuple[str, str], _Summary] = {}
        self._lock = asyncio.Lock()  # one update at a time: a second request finds it fresh
        self.whole_reads = 0
        """How many times a node was read whole (for tests and the bench)."""

    async def read(
        self, conn: psycopg.AsyncConnection[Any], site: str
    ) -> dict[str, dict[str, Any]]:
        """As `stored_nodes(conn, site)`, reading only what may have changed since last time."""
        async with self._lock:
            cur = await conn.execute(_NODE_NAMES.encode(), {"site": site})
            names = [str(row[0]) for row in await cur.fetchall()]
            for key in [k for k in self._nodes if k[0] == site and k[1] not in names]:
                del self._nodes[key]
            floors = await _floors(conn, site) if names else {}
            out = {}
            for node in names:
                summary = self._nodes.get((site, node))
                if summary is None or time.monotonic() - summary.read_whole >= self._recheck_s:
                    summary = await self._whole(conn, site, node)
                else:
                    await self._update(conn, site, node, summary)
                if summary is not None:
                    self._nodes[site, node] = summary
                    out[node] = summary.entry(floors.get(node, 0))
            return out

    async def _range(
        self, conn: psycopg.AsyncConnection[Any], site: str, node: str, seq: int, limit: int
    ) -> tuple[tuple[Any, ...] | None, list[list[int]]]:
        where = {"site": site, "node": node, "seq": seq, "limit": limit}
        cur = await conn.execute(_RANGE.encode(), where)
        row = await cur.fetchone()
        if row is None or row[0] is None:
            return None, []
        cur = await conn.execute(_RANGE_GAPS.encode(), where)
        return row, [[int(a), int(b)] for a, b in await cur.fetchall()]

    async def _whole(
        self, conn: psycopg.AsyncConnection[Any], site: str, node: str
    ) -> _Summary | None:
        self.whole_reads += 1
        row, gaps = await self._range(conn, site, node, 0, MAX_GAPS)
        if row is None:
            return None
        low, high, stored, lag = row
        lag_s = None if lag is None else round(float(lag), 3)
        gaps = below_lowest(int(low), gaps, 0)  # from seq 1: late rows below fill it
        return _Summary(int(low), int(high), stored, lag_s, gaps, time.monotonic())

    async def _update(
        self, conn: psycopg.AsyncConnection[Any], site: str, node: str, summary: _Summary
    ) -> None:
        where: dict[str, Any] = {"site": site, "node": node}
        cur = await conn.execute(_FIRST.encode(), where)
        first = await cur.fetchone()
        if first is not None and first[0] is not None:
            if int(first[0]) > summary.first_seq:  # its lowest rows went (retention, by hand)
                gone = [summary.first_seq, int(first[0]) - 1]
                summary.gaps = _merged([gone, *summary.gaps])
            summary.first_seq = int(first[0])
        if summary.gaps:  # rows that arrived late fill gaps (or split them)
            where |= {"low": [g[0] for g in summary.gaps], "high": [g[1] for g in summary.gaps]}
            cur = await conn.execute(_IN_GAPS.encode(), where)
            filled = await cur.fetchall()
            summary.gaps = _without(summary.gaps, {int(seq) for seq, _ in filled})
            summary.newest_stored = _newest(summary.newest_stored, *(s for _, s in filled))
        room = MAX_GAPS - len(summary.gaps)
        row, gaps = await self._range(conn, site, node, summary.max_seq, max(room, 0))
        if row is not None:  # the rows above the top known (the top one links the gaps)
            _, high, stored, lag = row
            summary.max_seq = max(summary.max_seq, int(high))
            summary.newest_stored = _newest(summary.newest_stored, stored)
            summary.lag_s = None if lag is None else round(float(lag), 3)
            summary.gaps += gaps[: max(room, 0)]


def _merged(gaps: list[list[int]]) -> list[list[int]]:
    """`gaps` in order, overlapping or adjacent ranges joined."""
    out: list[list[int]] = []
    for low, high in sorted(gaps):
        if out and low <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], high)
        else:
            out.append([low, high])
    return out


def _without(gaps: list[list[int]], present: set[int]) -> list[list[int]]:
    """`gaps` less the seqs now present (a filled gap goes, a partly filled one splits)."""
    out: list[list[int]] = []
    for low, high in gaps:
        start = low
        for seq in sorted(s for s in present if low <= s <= high):
            if seq > start:
                out.append([start, seq - 1])
            start = seq + 1
        if start <= high:
            out.append([start, high])
    return out


def _newest(current: datetime | None, *others: datetime | None) -> datetime | None:
    found = [t for t in (current, *others) if t is not None]
    return max(found) if found else None


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(moment)


def fleet(stored: dict[str, dict[str, Any]], states: NodeStates | None) -> list[dict[str, Any]]:
    """The fleet answer: one entry per node, sorted by name."""
    live = states.nodes if states is not None else {}
    out = []
    for node in sorted(set(stored) | set(live)):
        held = stored.get(node)
        state = live.get(node)
        health = (state.health if state is not None else None) or {}
        seen = [
            t
            for t in (
                held["newest_stored"] if held else None,
                state.received if state else None,
            )
            if t is not None
        ]
        gaps = list(held["gaps"]) if held else []
        last_seq, backlog = health.get("last_seq"), health.get("backlog") or {}
        top = held["max_seq"] if held else 0
        if isinstance(last_seq, int) and last_seq > top and not any(backlog.values()):
            gaps.append([top + 1, last_seq])  # nothing left to deliver, yet not all stored
        out.append(
            {
                "node": node,
                "online": state.online if state is not None else None,
                "version": state.version if state is not None else None,
                "last_seen": _when(max(seen)) if seen else None,
                "stored_seq": (gaps[0][0] - 1 if gaps else held["max_seq"]) if held else 0,
                "max_stored_seq": held["max_seq"] if held else 0,
                "gaps": gaps,
                "lag_s": held["lag_s"] if held else None,
                "last_seq": last_seq,
                "backlog": health.get("backlog"),
                "alarms": health.get("alarms"),
                "devices": health.get("devices"),
            }
        )
    return out


def now_text() -> str:
    """This moment as the envelope writes times."""
    return format_time(datetime.now(UTC))
