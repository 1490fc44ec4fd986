"""Trace-key look-ups over a large plant store: load events from many nodes, time each key.

`measure_lookups(conninfo)` migrates the database it is given (a scratch one: it empties
`lineside.events`), loads `events` events from `nodes` nodes through the postgres destination's
own statement (each node's batches interleaved, as a plant's agents deliver), and times
`store.events_by_key` for every trace key on `samples` random batches: p50 and p99 in ms.

`python -m agent.plant.bench_lookups CONNINFO [EVENTS] [NODES]` prints them as JSON.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg

from agent.plant.bench import GTIN, sample_data, sample_draft
from agent.plant.schema import EVENTS, migrate
from agent.plant.store import events_by_key
from sync.base import Envelope
from sync.postgres import INSERT, row_columns

if TYPE_CHECKING:
    from collections.abc import Iterator

START = datetime(2026, 11, 20, tzinfo=UTC)
BATCH = 500


@dataclass(frozen=True, slots=True)
class LookupFigures:
    """Load rate, store size, and per-key look-up times (ms) over the loaded events."""

    events: int
    nodes: int
    load_events_per_s: float
    store_mb: float
    key_indexes_mb: float
    lookups_ms: dict[str, dict[str, float]]


def _batches(events: int, nodes: int) -> Iterator[list[Envelope]]:
    per_node = events // nodes
    for first in range(0, per_node, BATCH):
        count = min(BATCH, per_node - first)
        for node in range(1, nodes + 1):
            drafts = (sample_draft(n, node, START) for n in range(first + 1, first + count + 1))
            yield [
                Envelope(n, d.id, d.route, d.payload(n), 0) for n, d in enumerate(drafts, first + 1)
            ]


def _samples(events: int, nodes: int, count: int) -> dict[str, list[tuple[str, str | None]]]:
    """Keys of `count` random batches (a batch.completed, its material, its shipment)."""
    rnd = random.Random(7)  # noqa: S311  # a reproducible sample, not a secret
    per_node = events // nodes
    out: dict[str, list[tuple[str, str | None]]] = {}
    for _ in range(count):
        node = rnd.randint(1, nodes)
        seq = 4 * rnd.randint(0, (per_node - 4) // 4) + 2  # sample_data: seq % 4 == 2 is a batch
        _, done = sample_data(seq, node)
        _, consumed = sample_data(seq - 1, node)
        _, shipped = sample_data(seq + 1, node)
        for kind, value, gtin in (
            ("trace_code", done["trace_code"], None),
            ("lot", done["lot"], GTIN),
            ("serial", done["serial"], GTIN),
            ("work_order", done["work_order"], None),
            ("batch", consumed["batch"], None),
            ("sscc", shipped["sscc"], None),
        ):
            out.setdefault(kind, []).append((value, gtin))
    return out


async def _sizes(conn: psycopg.AsyncConnection[Any]) -> tuple[float, float]:
    cur = await conn.execute(
        "SELECT (SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
        "WHERE inhparent = %s::regclass), "
        "(SELECT coalesce(sum(pg_relation_size(p.inhrelid)), 0) FROM pg_inherits p "
        "JOIN pg_class i ON i.oid = p.inhparent WHERE i.relkind = 'I' "
        "AND i.relname LIKE 'events\\_key\\_%%')",
        (EVENTS,),
    )
    row = await cur.fetchone()
    assert row is not None
    return float(row[0] or 0) / 2**20, float(row[1] or 0) / 2**20


async def measure_lookups(
    conninfo: str, *, events: int = 1_000_000, nodes: int = 10, samples: int = 300
) -> LookupFigures:
    """Load and time (see the module's docstring)."""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await migrate(conn, now=START)
        await conn.execute(f"TRUNCATE {EVENTS}")
        started, loaded = time.monotonic(), 0
        for batch in _batches(events, nodes):
            async with conn.transaction():
                await conn.execute(INSERT, row_columns(batch))
            loaded += len(batch)
        rate = loaded / (time.monotonic() - started)
        await conn.execute(f"VACUUM ANALYZE {EVENTS}")
        store_mb, keys_mb = await _sizes(conn)
        timings: dict[str, dict[str, float]] = {}
        for kind, keys in _samples(loaded, nodes, samples).items():
            took = []
            for value, gtin in keys:
                begun = time.perf_counter()
                found = await events_by_key(conn, kind, value, gtin=gtin)
                took.append((time.perf_counter() - begun) * 1000)
                assert found, (kind, value)
            took.sort()
            timings[kind] = {
                "p50": round(took[len(took) // 2], 2),
                "p99": round(took[min(len(took) - 1, int(len(took) * 0.99))], 2),
            }
    return LookupFigures(loaded, nodes, rate, store_mb, keys_mb, timings)


def main(argv: list[str]) -> int:
    """`python -m agent.plant.bench_lookups CONNINFO [EVENTS] [NODES]`."""
    if not argv:
        sys.stderr.write("usage: python -m agent.plant.bench_lookups CONNINFO [EVENTS] [NODES]\n")
        return 2
    events = int(argv[1]) if len(argv) > 1 else 1_000_000
    nodes = int(argv[2]) if len(argv) > 2 else 10  # noqa: PLR2004  # argv[2]
    figures = asyncio.run(measure_lookups(argv[0], events=events, nodes=nodes))
    sys.stdout.write(json.dumps(_as_dict(figures), indent=1) + "\n")
    return 0


def _as_dict(figures: LookupFigures) -> dict[str, Any]:
    return {
        "events": figures.events,
        "nodes": figures.nodes,
        "load_events_per_s": round(figures.load_events_per_s),
        "store_mb": round(figures.store_mb),
        "key_indexes_mb": round(figures.key_indexes_mb),
        "lookups_ms": figures.lookups_ms,
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
