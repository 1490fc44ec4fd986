"""`lineside bench --quick --json` runs end to end and names every figure (no timing asserts)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING

from agent.cli.bench_tables import render_cpu_table, render_table
from agent.cli.main import main

if TYPE_CHECKING:
    from pathlib import Path

    import pytest
    from support import Broker

FIELDS = (
    "e2e_events_per_s",
    "naive_events_per_s",
    "raw_publish_msgs_per_s",
    "drain_events_per_s",
    "p50_ms",
    "p99_ms",
    "peak_rss_mb",
    "e2e_x_naive",
    "e2e_x_raw",
    "drain_x_raw",
    "paced_cpu_us_per_event_20",
    "paced_cpu_us_per_event_100",
    "saturated_cpu_us_per_event",
    "intake_events_per_s",
    "delivery_events_per_s",
    "good_read_p99_ms",
    *(
        f"plc_{protocol}_{figure}"
        for protocol in ("modbus", "opcua", "s7", "enip")
        for figure in ("polls_per_s", "p99_ms", "raw_polls_per_s", "raw_p99_ms", "x_raw")
    ),
)


async def test_quick_bench_json_has_every_figure(tmp_path: Path, broker: Broker) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.cli",
        "bench",
        "--quick",
        "--json",
        "--broker",
        broker.url,
        "--dir",
        str(tmp_path / "bench"),
        "--scanners",
        "7",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(110):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    figures = json.loads(out)
    for name in FIELDS:
        assert isinstance(figures[name], float), name
        assert figures[name] > 0, name
    assert figures["e2e_scanners"] == 7
    assert figures["idle_process_cpu_percent"] >= 0  # a real agent process, measured from outside
    for mode in ("echo", "commit"):  # the floor: /proc counts ticks, a quick run may see none
        assert figures[f"floor_{mode}_cpu_us_per_event_20"] >= 0
    assert "[bench" in err.decode()  # progress while it runs
    assert "from 7 scanners" in err.decode()
    table = render_table(figures)
    assert "end to end" in table
    assert "drain / raw publish" in table
    assert "CPU per event at 20 scans/s" in table
    assert "intake alone" in table
    assert "scan -> good read p99" in table
    cpu = render_cpu_table(figures)
    assert "20 scans/s" in cpu
    assert "saturated" in cpu
    assert "floor" in cpu
    assert "baseline: the same read, raw opcua library" in table
    assert "PLC s7:" in err.decode()


def test_scanners_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--scanners", "0"]) == 2
    assert "--scanners: must be at least 1, not 0" in capsys.readouterr().err
