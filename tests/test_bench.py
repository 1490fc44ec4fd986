"""`lineside bench --quick --json` runs end to end and names every figure (no timing asserts)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING

from agent.bench import render_table
from agent.cli import main

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
    assert "[bench" in err.decode()  # progress while it runs
    assert "from 7 scanners" in err.decode()
    table = render_table(figures)
    assert "end to end" in table
    assert "drain / raw publish" in table


def test_scanners_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--scanners", "0"]) == 2
    assert "--scanners: must be at least 1, not 0" in capsys.readouterr().err
