"""The plant schema on a real PostgreSQL: migrations, partitions, grants, idempotency by id."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from plant_support import AGENT_PASSWORD, AGENT_ROLE, make_plant, migrated, payload

from agent.plant.fleet import stored_nodes
from agent.plant.history import PlantStoreError, plant_trace
from agent.plant.partitions import Month, maintain, partition_months
from agent.plant.schema import (
    KEY_EXPRESSIONS,
    LATEST,
    SchemaTooNew,
    agent_grants,
    migrate,
    quote_identifier,
    schema_version,
)
from agent.plant.store import events_by_key, events_by_keys

if TYPE_CHECKING:
    from pathlib import Path

    from postgres_support import PostgresCluster

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def layout(cluster: PostgresCluster) -> list[tuple[Any, ...]]:
    """Every table, index and constraint of schema lineside, with its definition."""
    return cluster.sql(
        "SELECT c.relname, c.relkind, pg_get_expr(c.relpartbound, c.oid) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'lineside' "
        "UNION ALL SELECT conname, 'constraint', pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE connamespace = 'lineside'::regnamespace ORDER BY 1"
    )


async def admin(cluster: PostgresCluster) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(cluster.admin_conninfo(), autocommit=True)


def insert(cluster: PostgresCluster, ident: str, time: str, seq: int = 1) -> None:
    cluster.sql(
        "INSERT INTO lineside.events (id, site, node, seq, type, time, source, data) "
        "VALUES (%s, 'plant-a', 'line-1', %s, 'goods.received', %s, 'test', '{}') "
        "ON CONFLICT (id, time) DO NOTHING",
        ident,
        seq,
        time,
    )


async def test_migrate_makes_the_layout_once(postgres: PostgresCluster) -> None:
    async with await admin(postgres) as conn:
        assert await schema_version(conn) == 0
        first = await migrate(conn, now=NOW)
        made = layout(postgres)
        second = await migrate(conn, now=NOW)
        assert await schema_version(conn) == LATEST
    assert (first.found, first.applied) == (0, (1, 2, 3))
    assert first.partitions_created == (
        "events_2026_10", "events_2026_11", "events_2026_12", "events_2027_01", "events_2027_02",
    )  # fmt: skip
    assert (second.found, second.applied, second.partitions_created) == (LATEST, (), ())
    assert layout(postgres) == made  # the second run changed nothing
    names = {row[0] for row in made}
    assert {"events", "events_default", "schema_version", "events_node_seq"} <= names
    assert {f"events_key_{kind}" for kind in KEY_EXPRESSIONS} <= names


async def test_concurrent_migrates_take_turns(postgres: PostgresCluster) -> None:
    async with await admin(postgres) as a, await admin(postgres) as b:
        results = await asyncio.gather(migrate(a, now=NOW), migrate(b, now=NOW))
    assert sorted(r.applied for r in results) == [(), (1, 2, 3)]
    assert postgres.sql("SELECT version FROM lineside.schema_version") == [(1,), (2,), (3,)]


async def test_a_newer_schema_is_never_downgraded(postgres: PostgresCluster) -> None:
    await migrated(postgres)
    postgres.sql("INSERT INTO lineside.schema_version (version, description) VALUES (9, 'future')")
    before = layout(postgres)
    async with await admin(postgres) as conn:
        with pytest.raises(
            SchemaTooNew, match=f"schema version 9, newer than this Lineside's {LATEST}"
        ):
            await migrate(conn, now=datetime(2030, 1, 1, tzinfo=UTC))
    assert layout(postgres) == before  # not even the partitions of 2030 were made


async def test_the_same_event_is_stored_once_whatever_its_month(postgres: PostgresCluster) -> None:
    async with await admin(postgres) as conn:
        await migrate(conn, now=NOW)
    for _ in range(2):
        insert(postgres, "A", "2026-11-24T16:01:02.345Z")  # a month with a partition
        insert(postgres, "B", "2019-03-01T00:00:00.000Z")  # an agent's clock years off
    assert postgres.sql("SELECT id, tableoid::regclass::text FROM lineside.events ORDER BY id") == [
        ("A", "lineside.events_2026_11"),
        ("B", "lineside.events_default"),
    ]
    with pytest.raises(psycopg.errors.UniqueViolation):
        postgres.sql(
            "INSERT INTO lineside.events (id, site, node, seq, type, time, source, data) "
            "VALUES ('A', 's', 'n', 1, 't', '2026-11-24T16:01:02.345Z', 'x', '{}')"
        )


async def test_maintenance_moves_default_rows_and_drops_old_months(
    postgres: PostgresCluster,
) -> None:
    async with await admin(postgres) as conn:
        await migrate(conn, now=NOW)
    insert(postgres, "old", "2026-03-05T00:00:00Z")  # before the partitions made
    insert(postgres, "older", "2025-01-05T00:00:00Z", seq=7)
    insert(postgres, "future", "2031-01-01T00:00:00Z")  # a clock far ahead
    async with await admin(postgres) as conn:
        done = await maintain(conn, now=NOW)
        assert done.moved == 2
        assert {"events_2026_03", "events_2025_01"} <= set(done.created)
        assert Month(2026, 3) in await partition_months(conn)
    rows = dict(postgres.sql("SELECT id, tableoid::regclass::text FROM lineside.events"))
    assert rows == {
        "old": "lineside.events_2026_03",
        "older": "lineside.events_2025_01",
        "future": "lineside.events_default",
    }
    insert(postgres, "old", "2026-03-05T00:00:00Z")  # re-delivered after the move: not twice
    assert postgres.sql("SELECT count(*) FROM lineside.events WHERE id = 'old'") == [(1,)]
    insert(
        postgres, "late", "2024-06-01T00:00:00Z", seq=3
    )  # lands in DEFAULT, older than retention
    async with await admin(postgres) as conn:
        kept = await maintain(conn, now=NOW, keep_months=12)
    assert set(kept.dropped) == {"events_2025_01"}
    assert kept.deleted == 1  # "late", from DEFAULT
    # the fleet's floor: line-1's highest seq among the rows dropped (7) and deleted (3)
    assert postgres.sql("SELECT site, node, seq FROM lineside.retention_floor") == [
        ("plant-a", "line-1", 7)
    ]
    left = {r[0] for r in postgres.sql("SELECT id FROM lineside.events")}
    assert left == {"old", "future"}


async def test_the_agent_role_may_insert_and_select_only(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    await make_plant(postgres, tmp_path)
    conninfo = postgres.dsn(AGENT_ROLE)
    async with await psycopg.AsyncConnection.connect(
        conninfo, password=AGENT_PASSWORD, autocommit=True
    ) as conn:
        await conn.execute(
            "INSERT INTO lineside.events (id, site, node, seq, type, time, source, data) "
            "VALUES ('X', 'plant-a', 'line-1', 1, 't', now(), 's', '{}')"
        )
        cur = await conn.execute("SELECT id FROM lineside.events")
        assert await cur.fetchall() == [("X",)]
        refused = [
            "CREATE TABLE lineside.mine (x int)",
            "CREATE TABLE public.mine (x int)",
            "ALTER TABLE lineside.events ADD COLUMN x int",
            "CREATE INDEX ON lineside.events (type)",
            "UPDATE lineside.events SET type = 'u'",
            "DELETE FROM lineside.events",
            "TRUNCATE lineside.events",
            "DROP TABLE lineside.events_default",
            "INSERT INTO lineside.schema_version (version, description) VALUES (2, 'x')",
            "SELECT * FROM lineside.schema_version",
            "CREATE SCHEMA mine",
        ]
        for statement in refused:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(statement.encode())


def test_grants_quote_the_role_name() -> None:
    assert agent_grants('line "3"') == [
        'GRANT USAGE ON SCHEMA lineside TO "line ""3""";',
        'GRANT SELECT, INSERT ON lineside.events TO "line ""3""";',
    ]
    with pytest.raises(ValueError, match="non-empty"):
        quote_identifier("")


async def test_every_trace_key_is_found_through_its_index(postgres: PostgresCluster) -> None:
    async with await admin(postgres) as conn:
        await migrate(conn, now=NOW)
    data = {
        "trace_code": "(01)09501101530003(10)L1(21)000001",
        "gtin": "09501101530003",
        "lot": "L1",
        "serial": "000001",
        "sscc": "009501101000000017",
        "work_order": "WO-7",
        "batch": "L0",
    }
    postgres.sql(
        "INSERT INTO lineside.events (id, site, node, seq, type, time, source, data) "
        "SELECT 'E' || g, 'plant-a', 'line-1', g, 't', %s, 's', "
        "CASE WHEN g = 7 THEN %s::jsonb ELSE jsonb_build_object('lot', 'other' || g) END "
        "FROM generate_series(1, 2000) g",
        NOW,
        payload("E7", 7, data).decode().split('"data":', 1)[1][:-1],
    )
    postgres.sql("ANALYZE lineside.events")
    async with await admin(postgres) as conn:
        for kind in KEY_EXPRESSIONS:
            gtin = data["gtin"] if kind in {"lot", "serial"} else None
            found = await events_by_key(conn, kind, data[kind], gtin=gtin)
            assert [e.id for e in found] == ["E7"], kind
            await conn.execute("SET enable_seqscan = off")  # "usable", not "chosen for 2000 rows"
            expression = KEY_EXPRESSIONS[kind]
            cur = await conn.execute(
                f"EXPLAIN SELECT id FROM lineside.events WHERE {expression} = %s".encode(),
                (data[kind],),
            )
            plan = "\n".join(r[0] for r in await cur.fetchall())
            assert f"events_2026_11_{kind}_" in plan or "_idx" in plan, plan
            assert "Seq Scan" not in plan, plan


async def test_migrate_refuses_a_connection_inside_a_transaction(
    postgres: PostgresCluster,
) -> None:
    async with await psycopg.AsyncConnection.connect(postgres.admin_conninfo()) as conn:
        await conn.execute("SELECT 1")  # not autocommit: a transaction is open now
        with pytest.raises(ValueError, match="outside any transaction"):
            await migrate(conn, now=NOW)


GTIN = "09501101530003"
ITEM = {"kind": "item", "gtin": GTIN, "serial": "000001", "lot": "L1"}


def aggregation(postgres: PostgresCluster, ident: str, seq: int, type_: str, data: Any) -> None:
    postgres.sql(
        "INSERT INTO lineside.events (id, site, node, seq, type, time, source, data) "
        "VALUES (%s, 'plant-a', 'dock-out', %s, %s, %s, 'scanner:pack-1', %s::jsonb)",
        ident,
        seq,
        type_,
        NOW,
        json.dumps(data),
    )


async def test_an_upgrade_from_version_1_indexes_the_pallets_already_stored(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    async with await admin(postgres) as conn:
        assert (await migrate(conn, now=NOW, target=1)).applied == (1,)
        with pytest.raises(PlantStoreError, match="run `lineside plant migrate`"):
            await plant_trace(conn, "plant-a", "(01)09501101530003(10)L1")  # serve not migrated
        with pytest.raises(PlantStoreError, match="run `lineside plant migrate`"):
            await stored_nodes(conn, "plant-a")  # no retention floors before version 3
    case = {"kind": "sscc", "sscc": "009501101000000024"}
    pallet = "009501101000000017"
    aggregation(
        postgres, "P1", 1, "aggregation.completed", {"sscc": pallet, "children": [ITEM, case]}
    )
    aggregation(postgres, "P2", 2, "aggregation.changed", {"sscc": pallet, "removed": [ITEM]})
    async with await admin(postgres) as conn:
        up = await migrate(conn, now=NOW)
        again = await migrate(conn, now=NOW)
    assert (up.found, up.applied, up.now, again.applied) == (1, (2, 3), LATEST, ())
    keys = postgres.sql("SELECT lineside.aggregation_keys(type, data) FROM lineside.events")
    assert keys == [(["lot:L1", f"serial:{GTIN}|000001"],)] * 2
    async with await admin(postgres) as conn:
        for kind, value, gtin in (("serial", "000001", GTIN), ("lot", "L1", None)):
            found = await events_by_key(conn, kind, value, gtin=gtin, site="plant-a")
            assert [e.id for e in found] == ["P1", "P2"], kind
        assert await events_by_key(conn, "lot", "L1", gtin=GTIN) == []  # as the agent: no GTIN+lot
        [one, none] = await events_by_keys(conn, "serial", [("000001", GTIN), ("000002", GTIN)])
        assert ([e.id for e in one], none) == (["P1", "P2"], [])
        await conn.execute("SET enable_seqscan = off")
        cur = await conn.execute(
            "EXPLAIN SELECT id FROM lineside.events WHERE type IN "
            "('aggregation.completed', 'aggregation.changed') "
            "AND lineside.aggregation_keys(type, data) @> ARRAY['lot:L1']"
        )
        plan = "\n".join(r[0] for r in await cur.fetchall())
        assert "aggregation_keys_idx" in plan, plan
        assert "Seq Scan" not in plan, plan

    # the agent's role, INSERT and SELECT only, stores pallets (malformed ones too: no keys)
    plant = await make_plant(postgres, tmp_path)
    async with await psycopg.AsyncConnection.connect(
        postgres.dsn(AGENT_ROLE), password=AGENT_PASSWORD, autocommit=True
    ) as conn:
        for seq, children in enumerate(([ITEM], "junk", [1, None, "x", {"kind": "item"}]), 3):
            await conn.execute(
                "INSERT INTO lineside.events (id, site, node, seq, type, time, source, data) "
                "VALUES (%s, 'plant-a', 'dock-out', %s, 'aggregation.completed', now(), 's', "
                "%s::jsonb)",
                (f"A{seq}", seq, json.dumps({"sscc": pallet, "children": children})),
            )
    assert plant.count() == 5
    assert postgres.sql(
        "SELECT id FROM lineside.events WHERE lineside.aggregation_keys(type, data) = '{}'"
    ) == [("A4",), ("A5",)]
