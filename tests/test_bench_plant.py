"""`lineside bench --plant` at a small size: every figure is there and the data behind it real."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from postgres_support import postgres_bindir

from agent.cli.bench_plant import render, run_plant_bench
from agent.cli.demo_postgres import cluster_root
from agent.cli.main import build_parser

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.skipif(postgres_bindir() is None, reason="PostgreSQL is not installed")


async def test_the_plant_bench_measures_every_figure(tmp_path: Path) -> None:
    figures = await run_plant_bench(tmp_path, quick=True, events=4_000, drained=1_000)
    drain = figures["drain"]
    assert set(drain["events_per_s"]) == {"drain", "insert", "unnest", "copy"}
    assert all(rate > 0 for rate in drain["events_per_s"].values())
    assert set(drain["ratio_to_copy"]) == {"drain", "insert", "unnest"}
    store = figures["store"]
    assert (store["events"], store["nodes"]) == (4_000, 10)
    assert set(store["lookups_ms"]) == {
        "trace_code",
        "lot",
        "serial",
        "work_order",
        "batch",
        "sscc",
    }
    assert store["plant_trace_ms"]["p99"] >= store["plant_trace_ms"]["p50"] > 0
    assert store["fleet_read"]["whole_ms"]["p50"] > 0
    assert store["fleet_read"]["incremental_ms"]["p50"] > 0
    assert figures["report_of_a_10000_event_lot"]["fsma204_ms"] > 0
    assert "x raw COPY" in render(figures)
    assert not await asyncio.to_thread(cluster_root(tmp_path).exists)  # its scratch cluster gone


def test_the_cli_offers_bench_plant() -> None:
    args = build_parser().parse_args(["bench", "--plant", "--quick", "--json"])
    assert (args.plant, args.quick, args.json) == (True, True, True)
