"""The plant store's micro-benchmarks run end to end (tiny sizes: no figure is asserted)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.plant.bench import measure
from agent.plant.bench_lookups import measure_lookups
from agent.plant.schema import KEY_EXPRESSIONS

if TYPE_CHECKING:
    from pathlib import Path

    from postgres_support import PostgresCluster


async def test_drain_against_raw_insert_and_copy(postgres: PostgresCluster, tmp_path: Path) -> None:
    figures = await measure(
        postgres.admin_conninfo(), tmp_path, events=300, batch_size=50, rounds=1
    )
    assert min(figures.drain, figures.insert, figures.unnest, figures.copy) > 0
    assert set(figures.ratios()) == {"drain", "insert", "unnest"}
    # each way wrote every event, the last one (the drain) included
    assert postgres.sql(
        "SELECT count(*), count(DISTINCT data->>'lot') > 1 FROM lineside.events"
    ) == [(300, True)]


async def test_lookups_over_many_nodes(postgres: PostgresCluster) -> None:
    figures = await measure_lookups(postgres.admin_conninfo(), events=400, nodes=4, samples=5)
    assert figures.events == 400
    assert set(figures.lookups_ms) == set(KEY_EXPRESSIONS)
    assert postgres.sql("SELECT count(DISTINCT node) FROM lineside.events") == [(4,)]
