"""The plant database's layout: versioned forward migrations, and the grants an agent's role needs.

`migrate` brings a database to `LATEST` in one transaction (serialized against other migrates
by an advisory lock): it creates the schema `lineside` and `lineside.schema_version`, applies
every migration after the recorded version in order, records each, then makes the monthly
partitions around now (`agent.plant.partitions`). Run twice it changes nothing. A database
whose recorded version is newer than this code is refused (`SchemaTooNew`): migrations only go
forward; downgrading means restoring a backup.

Versions::

    1   lineside.events, partitioned by month on `time` with a DEFAULT partition; unique
        (id, time); (site, node, seq); the trace keys as partial expression indexes
    2   a pallet's children as trace keys: `lineside.aggregation_keys(type, data)` and a GIN
        index on it over the aggregation events only (see below)
    3   `lineside.retention_floor`: per node, the highest seq retention has dropped
        (`partitions.maintain` writes it), so the fleet tells seqs dropped on purpose from
        seqs that never arrived below a node's lowest stored one

Why (id, time) is the uniqueness that makes delivery idempotent: a unique index of a
partitioned table must contain the partition key, so `UNIQUE (id)` alone cannot be declared.
An event's `time` is fixed when the event is made and travels inside its stored payload, so
every re-delivery of an event (a lost acknowledgement, a rewind, a release from quarantine)
carries the same (id, time) and lands in the same partition, where the index refuses it.
(site, node, seq) is not unique for ever: an outbox started anew counts from 1 again, and those
new events must not be taken for duplicates. A separate table of ids would cost a second index
insert per event and outlive the partitions that retention drops (see the README's figures).

Why partial expression indexes on `data` for the trace keys, not a key table filled in the same
transaction (by a trigger: the agent's role must not need to know the keys): measured on
1,000,000 events from 10 nodes on a 2-core development machine, the indexes cost 68 MB and
0.86x of the load rate without them, a look-up takes 0.2-0.6 ms (p50) and at most 2.1 ms
(p99); a key table (statement-level trigger) cost 301 MB and 0.68x of the load rate for no
faster look-ups (p99 up to 6.4 ms); with neither, a look-up scans everything (116-180 ms).

Why the children of a pallet get their own index (version 2): an aggregation event names the
pallet at `data->>'sscc'` but its items inside `data->'children'` (`aggregation.changed`:
`data->'removed'`), where no expression index of version 1 reaches. The agent indexes such an
event under `serial` (GTIN|serial) and `lot` of each item child (`agent.packing.station`), so a
batch's trace finds the SSCCs it went into; `aggregation_keys` gives the same keys as text
(`serial:GTIN|SERIAL`, `lot:LOT`), and the partial GIN index over it answers `@>` for one key
and `&&` for many (one query for a lot's every code). Measured with 25,000 pallets of 10 items over
1,000,000 events from 10 nodes (a loaded 2-core machine): 7.3 MB, a look-up by serial 1.2 ms
(p50) / 8 ms (p99), aggregation events stored at 0.49x the rate without it (others untouched).
A `jsonb_path_ops` GIN index on the aggregation events' `data` answered one key (`@>`) as fast
(1.7 / 6.5 ms) at 18 MB and many only as an OR of containments; with neither, 348 ms (p50). A
key table would need a trigger and rows that outlive the partitions retention drops. The
function is IMMUTABLE and PUBLIC may execute it (granted in the migration, as PostgreSQL's
default is), so the agent's role still needs only INSERT and SELECT.

Adding a migration: append a `Migration` with the next version (never edit a released one),
and extend the plant schema tests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.plant.partitions import (
    EVENTS,
    RETENTION_FLOOR,
    SCHEMA,
    ensure_partitions,
    outside_transaction,
)

__all__ = [
    "AGGREGATION_KEYS",
    "AGGREGATION_PREDICATE",
    "AGGREGATION_TYPES",
    "EVENTS",
    "GTIN_EXPRESSION",
    "KEY_EXPRESSIONS",
    "LATEST",
    "MIGRATIONS",
    "RETENTION_FLOOR",
    "SCHEMA",
    "MigrationResult",
    "SchemaError",
    "SchemaTooNew",
    "agent_grants",
    "migrate",
    "quote_identifier",
    "schema_version",
]

if TYPE_CHECKING:
    from datetime import datetime

    import psycopg

log = logging.getLogger(__name__)

# Any constant: migrates of the same database take turns on it.
MIGRATE_LOCK = 0x4C494E45  # "LINE"

# The trace keys, each the expression its index is built on. A query must use the same
# expression (`WHERE <expression> = %s`) for the planner to pick the index; the partial
# predicate (`IS NOT NULL`) is implied by any equality, so queries need not repeat it.
KEY_EXPRESSIONS: dict[str, str] = {
    "trace_code": "(data->>'trace_code')",
    "lot": "(data->>'lot')",  # with gtin as second column: serves "lot" and "GTIN + lot"
    "serial": "(data->>'serial')",  # with gtin as second column: "GTIN + serial"
    "sscc": "(data->>'sscc')",
    "work_order": "(data->>'work_order')",
    "batch": "(data->>'batch')",  # the batch (lot) a consumed material went into
}
GTIN_EXPRESSION = "(data->>'gtin')"
_WITH_GTIN = frozenset({"lot", "serial"})


AGGREGATION_TYPES = ("aggregation.completed", "aggregation.changed")
AGGREGATION_KEYS = f"{SCHEMA}.aggregation_keys(type, data)"
"""The expression of the aggregation-children index: queries must use it as it is."""
AGGREGATION_PREDICATE = "type IN ('aggregation.completed', 'aggregation.changed')"

# The keys the agent gives an aggregation event's item children (`agent.packing.station`):
# `serial:GTIN|SERIAL` and `lot:LOT` of each child of kind "item" (`children` of a completion,
# `removed` of a change). Malformed data gives no key, never an error (an INSERT must not fail).
_AGGREGATION_KEYS_FUNCTION = f"""CREATE FUNCTION {SCHEMA}.aggregation_keys(type text, data jsonb)
RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(array_agg(DISTINCT k.key ORDER BY k.key), '{{}}')
  FROM jsonb_array_elements(CASE
      WHEN type = 'aggregation.completed' AND jsonb_typeof(data->'children') = 'array'
        THEN data->'children'
      WHEN type = 'aggregation.changed' AND jsonb_typeof(data->'removed') = 'array'
        THEN data->'removed'
      ELSE '[]'::jsonb END) AS child,
    LATERAL (VALUES
      ('serial:' || (child->>'gtin') || '|' || (child->>'serial')),
      ('lot:' || (child->>'lot'))) AS k(key)
  WHERE jsonb_typeof(child) = 'object' AND child->>'kind' = 'item' AND k.key IS NOT NULL
$$"""  # noqa: S608


def _key_index(kind: str) -> str:
    expression = KEY_EXPRESSIONS[kind]
    columns = f"{expression}, {GTIN_EXPRESSION}" if kind in _WITH_GTIN else expression
    return f"CREATE INDEX events_key_{kind} ON {EVENTS} ({columns}) WHERE {expression} IS NOT NULL"


@dataclass(frozen=True, slots=True)
class Migration:
    """One forward step: the statements that take the layout from `version - 1` to `version`."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "events partitioned by month, unique (id, time), trace-key indexes",
        (
            f"""CREATE TABLE {EVENTS} (
                id text NOT NULL CHECK (id <> ''),
                site text NOT NULL,
                node text NOT NULL,
                seq bigint NOT NULL CHECK (seq >= 1),
                type text NOT NULL,
                time timestamptz NOT NULL,
                source text NOT NULL,
                data jsonb NOT NULL,
                clock_synced boolean,
                stored timestamptz NOT NULL DEFAULT now(),
                CONSTRAINT events_id_time_key UNIQUE (id, time)
            ) PARTITION BY RANGE (time)""",
            (
                f"COMMENT ON COLUMN {EVENTS}.clock_synced IS "
                "'false when the agent said its clock was not synchronised; null otherwise'"
            ),
            f"COMMENT ON COLUMN {EVENTS}.stored IS 'when the row was committed here'",
            f"CREATE TABLE {EVENTS}_default PARTITION OF {EVENTS} DEFAULT",
            f"CREATE INDEX events_node_seq ON {EVENTS} (site, node, seq)",
            *(_key_index(kind) for kind in KEY_EXPRESSIONS),
        ),
    ),
    Migration(
        2,
        "a pallet's item children as trace keys (serial, lot), GIN-indexed",
        (
            _AGGREGATION_KEYS_FUNCTION,
            # PostgreSQL's default, said here: an INSERT by any agent's role evaluates it
            f"GRANT EXECUTE ON FUNCTION {SCHEMA}.aggregation_keys(text, jsonb) TO PUBLIC",
            (
                f"CREATE INDEX events_aggregation_keys ON {EVENTS} "
                f"USING gin ({AGGREGATION_KEYS}) WHERE {AGGREGATION_PREDICATE}"
            ),
        ),
    ),
    Migration(
        3,
        "each node's highest seq dropped by retention",
        (
            f"""CREATE TABLE {RETENTION_FLOOR} (
                site text NOT NULL,
                node text NOT NULL,
                seq bigint NOT NULL,
                dropped timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (site, node)
            )""",
            (
                f"COMMENT ON TABLE {RETENTION_FLOOR} IS 'per node, the highest seq retention "
                "dropped: missing seqs up to it are not gaps'"
            ),
        ),
    ),
)
LATEST = MIGRATIONS[-1].version


class SchemaError(Exception):
    """The plant database's layout cannot be used or changed as asked."""


class SchemaTooNew(SchemaError):
    """The database was migrated by a newer Lineside; this one does not downgrade it."""


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """What `migrate` did: the version found, the version left, the partitions it made."""

    found: int
    now: int
    applied: tuple[int, ...]
    partitions_created: tuple[str, ...]


async def schema_version(conn: psycopg.AsyncConnection[Any]) -> int:
    """The recorded schema version (0 for a database never migrated)."""
    cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.schema_version",))
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur = await conn.execute(f"SELECT coalesce(max(version), 0) FROM {SCHEMA}.schema_version")  # noqa: S608
    row = await cur.fetchone()
    return int(row[0]) if row is not None else 0


async def migrate(
    conn: psycopg.AsyncConnection[Any],
    *,
    now: datetime | None = None,
    months_ahead: int = 3,
    target: int = LATEST,
) -> MigrationResult:
    """Bring the database to `target` (idempotent); raise `SchemaTooNew` for a newer one.

    Everything happens in one transaction, committed here: a failure leaves the database as it
    was. `conn` must be outside any transaction (autocommit, say). A `target` below `LATEST`
    is for tests of an upgrade (a database as an older Lineside left it).
    """
    outside_transaction(conn)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        found = await schema_version(conn)
        if found > LATEST:
            raise SchemaTooNew(
                f"the plant database has schema version {found}, newer than this Lineside's "
                f"{LATEST}: upgrade Lineside (migrations never downgrade; to go back, restore "
                "a backup)"
            )
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version ("
            " version integer PRIMARY KEY,"
            " description text NOT NULL,"
            " applied timestamptz NOT NULL DEFAULT now())"
        )
        applied = []
        for migration in MIGRATIONS:
            if migration.version <= found or migration.version > target:
                continue
            for statement in migration.statements:
                await conn.execute(statement.encode())
            await conn.execute(
                f"INSERT INTO {SCHEMA}.schema_version (version, description) VALUES (%s, %s)",  # noqa: S608
                (migration.version, migration.description),
            )
            applied.append(migration.version)
            log.info("plant schema: applied %d (%s)", migration.version, migration.description)
        created = await ensure_partitions(conn, now=now, months_ahead=months_ahead)
    return MigrationResult(found, max([found, *applied]), tuple(applied), tuple(created))


def quote_identifier(name: str) -> str:
    """`name` as a PostgreSQL identifier, double-quoted."""
    if not name or "\0" in name:
        raise ValueError("a role name must be non-empty and hold no NUL")
    return '"' + name.replace('"', '""') + '"'


def agent_grants(role: str) -> list[str]:
    """The statements that let `role` (an agent's) deliver events: INSERT and SELECT, no more.

    The role makes no table, alters nothing, updates and deletes nothing; the partitions are
    reached through `lineside.events` and need no grant of their own.
    """
    who = quote_identifier(role)
    return [
        f"GRANT USAGE ON SCHEMA {SCHEMA} TO {who};",
        f"GRANT SELECT, INSERT ON {EVENTS} TO {who};",
    ]
