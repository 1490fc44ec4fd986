"""The plant store as tests meet it: a migrated database, an agent role, drafts of envelopes.

`make_plant(cluster, tmp_path)` migrates the test's own PostgreSQL (as its superuser), creates
the agent's role with exactly the GRANTs `agent_grants` prints, and writes that role's password
to a file: every sink test delivers as such a role, never as a superuser.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from agent.plant.schema import agent_grants, migrate
from sync.base import Draft
from sync.postgres_config import PostgresDestinationConfig
from sync.publisher import Publisher

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from pathlib import Path

    from postgres_support import PostgresCluster, PostgresTemplate

    from sync.base import Sink
    from sync.outbox import Outbox

AGENT_ROLE = "lineside_line1"
AGENT_PASSWORD = "line1-secret"
SITE, NODE = "plant-a", "line-1"
EPOCH = datetime(2026, 11, 24, 16, 1, 2, 345000, tzinfo=UTC)


@dataclass
class Plant:
    """A migrated plant database on the test's cluster, and the agent role that writes to it."""

    cluster: PostgresCluster
    password_file: Path

    def config(self, name: str = "plant", **extra: Any) -> PostgresDestinationConfig:
        """The agent's destination: its role over TCP, TLS off unless `extra` says otherwise."""
        fields: dict[str, Any] = {
            "name": name,
            "kind": "postgres",
            "dsn": self.cluster.dsn(AGENT_ROLE),
            "password_file": str(self.password_file),
            "sslmode": "disable",
        }
        return PostgresDestinationConfig.model_validate(fields | extra)

    def stored(self) -> list[tuple[str, int]]:
        """(id, seq) of every stored row, in seq order."""
        return [
            (r[0], r[1])
            for r in self.cluster.sql("SELECT id, seq FROM lineside.events ORDER BY seq, id")
        ]

    def count(self) -> int:
        """How many rows lineside.events holds."""
        return int(self.cluster.sql("SELECT count(*) FROM lineside.events")[0][0])


async def migrated(cluster: PostgresCluster) -> None:
    """Migrate the test database as its superuser."""
    async with await psycopg.AsyncConnection.connect(
        cluster.admin_conninfo(), autocommit=True
    ) as conn:
        await migrate(conn)


async def make_plant(cluster: PostgresCluster, tmp_path: Path) -> Plant:
    """Migrate, create the agent's role with only the printed GRANTs, write its password file."""
    await migrated(cluster)
    cluster.create_role(AGENT_ROLE, AGENT_PASSWORD)
    for statement in agent_grants(AGENT_ROLE):
        cluster.sql(statement)
    password_file = tmp_path / "plantdb.pw"
    password_file.write_text(AGENT_PASSWORD + "\n")
    return Plant(cluster, password_file)


SEQ_MARK = 987654321987
"""Stands where the seq goes in a `raw` test payload (the outbox writes the real one there)."""


def payload(
    ident: str, seq: int, data: dict[str, Any] | None = None, *, type_: str = "goods.received"
) -> bytes:
    """An envelope as the agent renders it (CONTRACTS.md)."""
    moment = EPOCH + timedelta(milliseconds=seq)
    body = {
        "id": ident,
        "type": type_,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "site": SITE,
        "node": NODE,
        "seq": seq,
        "source": "scanner:dock-in-1",
        "data": {"gtin": "09501101530003", "lot": f"L{seq}"} if data is None else data,
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def draft(
    n: int, data: dict[str, Any] | None = None, *, type_: str = "goods.received", raw: bytes = b""
) -> Draft:
    """A draft whose payload is an envelope (or `raw` bytes, to store something that is not)."""
    ident = f"01JDQ2V8W7K3M5N9P0R4{n:06d}"
    if raw:
        head, _, tail = raw.partition(str(SEQ_MARK).encode())
    else:  # the n-th draft appended to an empty outbox gets seq n: time and lot follow n
        head, _, tail = payload(ident, n, data, type_=type_).partition(b'"seq":%d,' % n)
        head, tail = head + b'"seq":', b"," + tail
    return Draft(id=ident, route=type_, head=head, tail=tail)


@contextlib.asynccontextmanager
async def publishing(
    outbox: Outbox, name: str, sink_factory: Callable[[], Sink]
) -> AsyncIterator[Publisher]:
    """The agent's publisher for one destination, running while the block runs."""
    publisher = Publisher(outbox, name, sink_factory, routes=frozenset({"*"}), backoff_cap=0.2)
    task = asyncio.create_task(publisher.run(), name=f"sync:{name}")
    try:
        yield publisher
        assert not task.done(), task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.contextmanager
def shared_plant(template: PostgresTemplate, directory: Path) -> Iterator[Plant]:
    """One migrated cluster for a whole test module (initdb and start are the slow parts).

    Tests of the module share it: each writes events of its own nodes, or calls `clear`.
    """
    cluster = template.cluster()
    try:
        cluster.start()
        yield asyncio.run(make_plant(cluster, directory))
    finally:
        cluster.remove()


def clear(plant: Plant) -> None:
    """Delete every stored event (between tests sharing one plant database)."""
    plant.cluster.sql("TRUNCATE lineside.events")
