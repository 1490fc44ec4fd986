"""`lineside bench --plant`: the plant store's figures, on a private PostgreSQL of the bench's own.

Starts a cluster as the demo does (`demo_postgres`: initdb in the bench's folder, a free
loopback port; the machine's own PostgreSQL is never used), then measures:

- the postgres destination's drain rate against raw batched `INSERT … ON CONFLICT` and raw
  binary `COPY` of the same rows in the same run (`agent.plant.bench`; goal ≥ 0.5x COPY);
- trace-key look-ups over `events` events from 10 nodes (`agent.plant.bench_lookups`), and
  the whole `lineside plant trace` answer of sampled trace codes over the same store (goal:
  p99 ≤ 50 ms);
- `GET /api/fleet`'s reading of the store over the same events: a whole read of every node's
  seqs (`stored_nodes`, what each request did before) against the incremental per-node
  summaries (`FleetSummaries`) between two polls in which each node stored 10 new events;
- `lineside plant report` of one lot with 10,000 events (JSON, and FSMA 204).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg

from agent.cli.demo_postgres import demo_postgres
from agent.events import format_time
from agent.plant.bench import GTIN, SITE, measure
from agent.plant.bench_lookups import START, _samples, measure_lookups
from agent.plant.fleet import FleetSummaries, stored_nodes
from agent.plant.history import plant_report, plant_trace
from agent.plant.reports import render_plant_report
from agent.plant.schema import EVENTS
from sync.base import Envelope
from sync.postgres import INSERT, row_columns

if TYPE_CHECKING:
    from pathlib import Path

NODES = 10
REPORT_EVENTS = 10_000
TRACES = 100
FLEET_POLLS = 20


def _percentiles(took: list[float]) -> dict[str, float]:
    took = sorted(took)
    return {
        "p50": round(took[len(took) // 2], 2),
        "p99": round(took[min(len(took) - 1, int(len(took) * 0.99))], 2),
    }


async def _traces(conninfo: str, events: int) -> dict[str, float]:
    codes = [value for value, _ in _samples(events, NODES, TRACES)["trace_code"]]
    took = []
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        for code in codes:
            begun = time.perf_counter()
            found = await plant_trace(conn, SITE, code)
            took.append((time.perf_counter() - begun) * 1000)
            assert found is not None, code
    return _percentiles(took)


async def _fleet(conninfo: str) -> dict[str, Any]:
    """Per poll: the whole read, and the incremental one after 10 new events per node."""
    summaries = FleetSummaries(recheck_s=3600)
    whole, incremental = [], []
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        cur = await conn.execute(
            f"SELECT node, max(seq) FROM {EVENTS} WHERE site = %s GROUP BY node",  # noqa: S608
            (SITE,),
        )
        tops = {str(node): int(top) for node, top in await cur.fetchall()}
        await summaries.read(conn, SITE)  # the first request reads every node whole
        for _ in range(FLEET_POLLS):
            for node, top in list(tops.items()):  # what 5 s of a busy node brings
                await conn.execute(
                    f"INSERT INTO {EVENTS} (id, site, node, seq, type, time, source, data) "  # noqa: S608
                    "SELECT %s || '-' || s, %s, %s, s, 'bench.tick', now(), 'bench', '{}' "
                    "FROM generate_series(%s::bigint, %s::bigint) s",
                    (f"fleet-{node}-{top}", SITE, node, top + 1, top + 10),
                )
                tops[node] = top + 10
            begun = time.perf_counter()
            fresh = await summaries.read(conn, SITE)
            incremental.append((time.perf_counter() - begun) * 1000)
            begun = time.perf_counter()
            full = await stored_nodes(conn, SITE)
            whole.append((time.perf_counter() - begun) * 1000)
            assert {n: e["max_seq"] for n, e in fresh.items()} == {
                n: e["max_seq"] for n, e in full.items()
            }
    figures: dict[str, Any] = {
        "whole_ms": _percentiles(whole),
        "incremental_ms": _percentiles(incremental),
    }
    figures["ratio_p50"] = round(
        figures["incremental_ms"]["p50"] / max(figures["whole_ms"]["p50"], 0.001), 4
    )
    return figures


def _lot_envelopes(count: int) -> list[Envelope]:
    """One lot's chain of `count` events: its batch, then a pallet of it shipped per event."""
    out = []
    for n in range(1, count + 1):
        if n == 1:
            type_, data = "batch.completed", {"trace_code": "(01)X(10)BIGLOT", "gtin": GTIN,
                                              "lot": "BIGLOT", "serial": "000001",
                                              "quantity": count - 1, "materials": []}  # fmt: skip
        else:
            type_, data = "goods.shipped", {"sscc": f"0950110{n:011d}", "gtin": GTIN,
                                            "lot": "BIGLOT", "quantity": 1}  # fmt: skip
        ident = f"LOT{n:023d}"
        stamp = format_time(datetime.fromtimestamp(START.timestamp() + n / 1000, UTC))
        body = {"id": ident, "type": type_, "time": stamp, "site": SITE, "node": "node-lot",
                "seq": n, "source": "bench", "data": data}  # fmt: skip
        out.append(Envelope(n, ident, type_, json.dumps(body).encode(), 0))
    return out


async def _report(conninfo: str) -> dict[str, float]:
    envelopes = _lot_envelopes(REPORT_EVENTS)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        for first in range(0, len(envelopes), 500):
            async with conn.transaction():
                await conn.execute(INSERT, row_columns(envelopes[first : first + 500]))
        await conn.execute(f"ANALYZE {EVENTS}")
        figures = {}
        for fmt in ("json", "fsma204"):
            begun = time.perf_counter()
            report = await plant_report(conn, SITE, f"{GTIN}|BIGLOT")
            assert report is not None
            text = render_plant_report(report, fmt, timezone=None)
            figures[f"{fmt}_ms"] = round((time.perf_counter() - begun) * 1000, 1)
            assert len(report["events"]) == REPORT_EVENTS, len(report["events"])
            assert text
    return figures


async def run_plant_bench(
    workdir: Path, *, quick: bool, events: int | None = None, drained: int | None = None
) -> dict[str, Any]:
    """Every figure (see the module docstring), as a JSON-able dict.

    `events` (the store's size) and `drained` (the drain's events) override the sizes.
    """
    events = events or (100_000 if quick else 1_000_000)
    async with demo_postgres(workdir, keep=False) as cluster:
        conninfo = cluster.admin_conninfo()
        drain = await measure(conninfo, workdir, events=drained or (5_000 if quick else 50_000))
        lookups = await measure_lookups(conninfo, events=events, nodes=NODES)
        traces = await _traces(conninfo, events)
        fleet = await _fleet(conninfo)
        report = await _report(conninfo)
    return {
        "drain": {
            "events": drain.events,
            "events_per_s": {
                k: round(getattr(drain, k)) for k in ("drain", "insert", "unnest", "copy")
            },
            "ratio_to_copy": drain.ratios(),
        },
        "store": {
            "events": lookups.events,
            "nodes": lookups.nodes,
            "load_events_per_s": round(lookups.load_events_per_s),
            "store_mb": round(lookups.store_mb),
            "key_indexes_mb": round(lookups.key_indexes_mb),
            "lookups_ms": lookups.lookups_ms,
            "plant_trace_ms": traces,
            "fleet_read": fleet,
        },
        "report_of_a_10000_event_lot": report,
    }


def render(figures: dict[str, Any]) -> str:
    """The figures as lines for people."""
    drain, store, report = (
        figures["drain"],
        figures["store"],
        figures["report_of_a_10000_event_lot"],
    )
    rates, ratios = drain["events_per_s"], drain["ratio_to_copy"]
    worst = max(v["p99"] for v in store["lookups_ms"].values())
    lines = [
        (
            f"postgres destination drain: {rates['drain']} events/s = {ratios['drain']} x raw "
            f"COPY ({rates['copy']}/s); raw INSERT ON CONFLICT {ratios['insert']} x, the sink's "
            f"statement alone {ratios['unnest']} x ({drain['events']} events)"
        ),
        (
            f"store of {store['events']} events from {store['nodes']} nodes: loaded at "
            f"{store['load_events_per_s']} events/s, {store['store_mb']} MB, key indexes "
            f"{store['key_indexes_mb']} MB"
        ),
        (
            f"trace-key look-up: worst p99 {worst} ms; plant trace (whole answer): p50 "
            f"{store['plant_trace_ms']['p50']} ms, p99 {store['plant_trace_ms']['p99']} ms"
        ),
        (
            f"fleet read per poll: whole p50 {store['fleet_read']['whole_ms']['p50']} ms, "
            f"incremental p50 {store['fleet_read']['incremental_ms']['p50']} ms "
            f"({store['fleet_read']['ratio_p50']} x)"
        ),
        (
            f"report of a lot with 10,000 events: json {report['json_ms']} ms, fsma204 "
            f"{report['fsma204_ms']} ms"
        ),
    ]
    return "\n".join(lines)


def plant_bench_command(workdir: Path, *, quick: bool, as_json: bool, machine: str) -> int:
    """`lineside bench --plant`: print the figures."""
    figures = asyncio.run(run_plant_bench(workdir, quick=quick))
    if as_json:
        sys.stdout.write(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(f"lineside bench --plant on {machine}{' (quick)' if quick else ''}\n")
        sys.stdout.write(render(figures) + "\n")
    return 0
