"""The fleet's per-node summaries on a real PostgreSQL: incremental reads agree with a whole read.

`FleetSummaries` reads a node whole once, then only rows above its top, rows inside its known
gaps and its lowest seq; after new rows, late rows filling (or splitting) gaps and a month
dropped by retention its answer equals `stored_nodes` (one pass over everything). A row
deleted by hand below the top shows at the node's next whole read (`recheck_s`). Seqs missing
below a node's lowest stored one are a gap, unless retention dropped them (its floor).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg

from agent.plant.fleet import FleetSummaries, fleet, stored_nodes
from agent.plant.partitions import maintain
from agent.plant.schema import migrate

if TYPE_CHECKING:
    from postgres_support import PostgresCluster


def store(cluster: PostgresCluster, node: str, seqs: list[int], month: str = "2026-11") -> None:
    cluster.sql(
        "INSERT INTO lineside.events (id, site, node, seq, type, time, source, data) "
        "SELECT %s || '-' || s, 'plant-a', %s, s, 't', (%s || '-15')::timestamptz, 's', '{}' "
        "FROM unnest(%s::bigint[]) s",
        node,
        node,
        month,
        seqs,
    )


def gaps(answer: dict[str, dict[str, Any]]) -> dict[str, tuple[int, int, list[list[int]]]]:
    return {n: (e["first_seq"], e["max_seq"], e["gaps"]) for n, e in answer.items()}


async def test_incremental_summaries_agree_with_a_whole_read(postgres: PostgresCluster) -> None:
    async with await psycopg.AsyncConnection.connect(
        postgres.admin_conninfo(), autocommit=True
    ) as conn:
        await migrate(conn, now=datetime(2026, 11, 24, tzinfo=UTC))  # months 2026-10 on
    store(postgres, "line-1", [*range(1, 4), *range(6, 11)], month="2026-10")
    store(postgres, "dock-in", [1, 2])
    summaries = FleetSummaries(recheck_s=3600)
    async with await psycopg.AsyncConnection.connect(
        postgres.admin_conninfo(), autocommit=True
    ) as conn:

        async def agree() -> dict[str, tuple[int, int, list[list[int]]]]:
            incremental = await summaries.read(conn, "plant-a")
            whole = await stored_nodes(conn, "plant-a")
            assert gaps(incremental) == gaps(whole)
            for node, entry in incremental.items():
                assert entry["newest_stored"] == whole[node]["newest_stored"], node
                assert entry["lag_s"] == whole[node]["lag_s"], node
            return gaps(incremental)

        assert await agree() == {"line-1": (1, 10, [[4, 5]]), "dock-in": (1, 2, [])}
        assert summaries.whole_reads == 2
        store(postgres, "line-1", [4], month="2026-10")  # late
        store(postgres, "line-1", [*range(12, 21), 23])  # 11, 21-22 missing
        store(postgres, "dock-out", [1])  # a node seen for the first time
        assert await agree() == {
            "line-1": (1, 23, [[5, 5], [11, 11], [21, 22]]),
            "dock-in": (1, 2, []),
            "dock-out": (1, 1, []),
        }
        store(postgres, "line-1", [5], month="2026-10")
        store(postgres, "line-1", [21])
        assert (await agree())["line-1"] == (1, 23, [[11, 11], [22, 22]])
        # retention drops line-1's first month (1-10); 11 never arrived: still a gap
        await maintain(conn, now=datetime(2026, 11, 24, tzinfo=UTC), keep_months=1)
        assert (await agree())["line-1"] == (12, 23, [[11, 11], [22, 22]])
        assert summaries.whole_reads == 3  # dock-out; the rest incrementally

        postgres.sql("DELETE FROM lineside.events WHERE node = 'dock-in' AND seq = 1")
        # the lowest row deleted by hand: a gap at once (the lowest seq is read every time)
        assert (await summaries.read(conn, "plant-a"))["dock-in"]["gaps"] == [[1, 1]]
        rechecking = FleetSummaries(recheck_s=0)
        assert (await rechecking.read(conn, "plant-a"))["dock-in"]["first_seq"] == 2
        postgres.sql("DELETE FROM lineside.events WHERE node = 'dock-out'")
        assert "dock-out" not in await summaries.read(conn, "plant-a")


async def test_seqs_missing_below_the_lowest_stored_are_a_gap_unless_retention_dropped_them(
    postgres: PostgresCluster,
) -> None:
    async with await psycopg.AsyncConnection.connect(
        postgres.admin_conninfo(), autocommit=True
    ) as conn:
        await migrate(conn, now=datetime(2026, 11, 24, tzinfo=UTC))  # months 2026-10 on
    store(postgres, "late-start", [*range(11, 16)])  # 1-10 never arrived
    store(postgres, "kept", [*range(1, 6)], month="2026-10")  # 1-5 retention will drop
    store(postgres, "kept", [*range(6, 9)])
    store(postgres, "both", [1, 2], month="2026-10")  # retention drops 1-2; 3-4 never arrived
    store(postgres, "both", [5, 6])
    summaries = FleetSummaries(recheck_s=3600)
    async with await psycopg.AsyncConnection.connect(
        postgres.admin_conninfo(), autocommit=True
    ) as conn:

        async def answer() -> dict[str, tuple[int, list[list[int]]]]:
            incremental = await summaries.read(conn, "plant-a")
            assert gaps(incremental) == gaps(await stored_nodes(conn, "plant-a"))
            return {e["node"]: (e["stored_seq"], e["gaps"]) for e in fleet(incremental, None)}

        assert await answer() == {
            "late-start": (0, [[1, 10]]),
            "kept": (8, []),
            "both": (2, [[3, 4]]),
        }
        await maintain(conn, now=datetime(2026, 11, 24, tzinfo=UTC), keep_months=1)
        assert await answer() == {
            "late-start": (0, [[1, 10]]),  # nothing of it was dropped
            "kept": (8, []),  # 1-5 dropped on purpose
            "both": (2, [[3, 4]]),  # 1-2 dropped on purpose, 3-4 never arrived
        }
        store(postgres, "late-start", [1, 2, 3])  # late: the gap shrinks
        assert (await answer())["late-start"] == (3, [[4, 10]])
        assert summaries.whole_reads == 3  # each node once; the rest incrementally
