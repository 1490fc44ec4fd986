"""A micro-benchmark of the postgres destination against the database's own raw write rates.

`measure(conninfo, workdir)` migrates the database it is given (a scratch one: it empties
`lineside.events`), makes the same events once, and times four ways of writing them, each into
the emptied table with every index in place, in transactions of `batch_size` rows:

- `drain`: the agent's way: an outbox file holding the events, the publisher and `PostgresSink`
  (envelopes read back from SQLite, parsed, inserted, committed, cursor moved);
- `insert`: raw batched `INSERT … VALUES … ON CONFLICT DO NOTHING` (psycopg's executemany,
  typed columns prepared before the clock starts);
- `unnest`: the sink's one statement per batch (payloads taken apart by the database),
  without outbox or publisher;
- `copy`: raw binary `COPY` of the same typed columns (no duplicate check: the fastest any
  writer can go).

`python -m agent.plant.bench CONNINFO [EVENTS]` prints them and their ratios to `copy`; the
conninfo must be allowed to create tables (it runs the migration).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from agent.plant.schema import EVENTS, migrate
from sync.acked import AckedSink
from sync.base import Draft
from sync.outbox import Outbox
from sync.postgres import INSERT, PostgresSink, row_columns
from sync.postgres_config import PostgresDestinationConfig
from sync.publisher import Publisher

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sync.base import Envelope, Sink

SITE = "bench"
GTIN = "09501101530003"
COLUMN_NAMES = "id, site, node, seq, type, time, source, data, clock_synced"


# the typed columns of one event, as the raw baselines write them
Row = tuple[str, str, str, int, str, datetime, str, Jsonb, bool | None]


def typed_row(envelope: Envelope) -> Row:
    """The columns of `envelope` (parsed before the raw baselines' clock starts)."""
    doc = json.loads(envelope.payload)
    return (envelope.id, doc["site"], doc["node"], envelope.seq, doc["type"],
            datetime.fromisoformat(doc["time"]), doc["source"],
            Jsonb(json.dumps(doc["data"], separators=(",", ":")), dumps=str),
            doc.get("clock_synced"))  # fmt: skip


@dataclass(frozen=True, slots=True)
class PlantFigures:
    """Events per second of each way of writing the same events."""

    events: int
    batch_size: int
    drain: float
    insert: float
    unnest: float
    copy: float

    def ratios(self) -> dict[str, float]:
        """Each rate divided by the raw COPY rate."""
        return {k: round(getattr(self, k) / self.copy, 2) for k in ("drain", "insert", "unnest")}


def sample_data(seq: int, node: int) -> tuple[str, dict[str, Any]]:
    """A plausible event of a line or a dock: its type and data, with the trace keys."""
    lot = f"L{node:02d}{seq // 200:05d}"
    match seq % 4:
        case 0:
            return "goods.received", {"gtin": GTIN, "lot": f"M{lot}", "serial": str(seq),
                                      "raw": f"(01){GTIN}(10)M{lot}", "quantity": 10}  # fmt: skip
        case 1:
            return "material.consumed", {"gtin": GTIN, "lot": f"M{lot}", "batch": lot,
                                         "raw": f"(01){GTIN}(10)M{lot}"}  # fmt: skip
        case 2:
            code = f"(01){GTIN}(10){lot}(21){seq:06d}"
            return "batch.completed", {"trace_code": code, "gtin": GTIN, "lot": lot,
                                       "serial": f"{seq:06d}", "work_order": f"WO-{lot}",
                                       "quantity": 1000, "params": {"fill_temp_c": 71.5},
                                       "materials": [{"gtin": GTIN, "lot": f"M{lot}"}]}  # fmt: skip
        case _:
            return "goods.shipped", {"sscc": f"{node:02d}{seq:016d}", "raw": f"(00){seq:018d}"}


def sample_draft(n: int, node: int, origin: datetime) -> Draft:
    """The `n`th event of `node`, `n` ms after `origin`, as an outbox draft."""
    type_, data = sample_data(n, node)
    ident = f"{node:04d}{n:022d}"
    stamp = (origin + timedelta(milliseconds=n)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    head = {"id": ident, "type": type_, "time": stamp, "site": SITE, "node": f"node-{node}"}
    tail = {"source": "bench", "data": data}

    before = json.dumps({**head, "seq": 0}, separators=(",", ":")).encode()[:-2]  # up to the seq
    after = json.dumps(tail, separators=(",", ":")).encode()
    return Draft(id=ident, route=type_, head=before, tail=b"," + after[1:])


def sample_drafts(count: int, *, node: int = 1, start: datetime | None = None) -> list[Draft]:
    """`count` events of one node as outbox drafts (payloads as the agent renders them)."""
    origin = start or datetime.now(UTC)
    return [sample_draft(n, node, origin) for n in range(1, count + 1)]


async def _empty(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute(f"TRUNCATE {EVENTS}")


async def _drain(config: PostgresDestinationConfig, outbox: Outbox, total: int) -> float:
    done = asyncio.Event()

    counted = 0

    def count(batch: Sequence[Envelope]) -> None:
        nonlocal counted
        counted += len(batch)
        if counted >= total:
            done.set()

    def sink() -> Sink:
        return AckedSink(PostgresSink(config), count)

    publisher = Publisher(outbox, config.name, sink, routes=frozenset({"*"}))
    started = time.monotonic()
    task = asyncio.create_task(publisher.run(), name=f"sync:{config.name}")
    try:
        async with asyncio.timeout(3600):
            await done.wait()
        return time.monotonic() - started
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _raw(
    conn: psycopg.AsyncConnection[Any],
    rows: Sequence[Row],
    envelopes: Sequence[Envelope],
    batch_size: int,
    how: str,
) -> float:
    values = "(" + ", ".join(["%s"] * 9) + ")"
    started = time.monotonic()
    for first in range(0, len(rows), batch_size):
        part = rows[first : first + batch_size]
        async with conn.transaction():
            if how == "copy":
                statement = f"COPY {EVENTS} ({COLUMN_NAMES}) FROM STDIN (FORMAT BINARY)"
                async with conn.cursor().copy(statement.encode()) as copy:
                    copy.set_types(["text", "text", "text", "int8", "text", "timestamptz",
                                    "text", "jsonb", "bool"])  # fmt: skip
                    for row in part:
                        await copy.write_row(row)
            elif how == "insert":
                async with conn.cursor() as cur:
                    await cur.executemany(
                        f"INSERT INTO {EVENTS} ({COLUMN_NAMES}) VALUES {values} "  # noqa: S608
                        "ON CONFLICT (id, time) DO NOTHING".encode(),
                        part,
                    )
            else:
                await conn.execute(INSERT, row_columns(envelopes[first : first + batch_size]))
    return time.monotonic() - started


async def measure(
    conninfo: str, workdir: Path, *, events: int = 50_000, batch_size: int = 500, rounds: int = 3
) -> PlantFigures:
    """Time the four ways of writing `events` events (see the module's docstring)."""
    drafts = sample_drafts(events)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await migrate(conn)
        async with Outbox(workdir / "bench.db", min_free_bytes=0, destinations=["plant"]) as box:
            envelopes = await box.append_many(drafts)
            rows = [typed_row(e) for e in envelopes]
            config = PostgresDestinationConfig(
                name="plant", kind="postgres", dsn=conninfo, sslmode="disable",
                batch_size=batch_size,
            )  # fmt: skip
            seconds: dict[str, float] = {}
            # interleaved rounds, best of each: a shared machine's noise hits all alike
            for round_ in range(rounds):
                for how in ("copy", "insert", "unnest", "drain"):
                    await _empty(conn)
                    if how == "drain":
                        await box.rewind(config.name, 0)
                        took = await _drain(config, box, events)
                    else:
                        took = await _raw(conn, rows, envelopes, batch_size, how)
                    seconds[how] = took if round_ == 0 else min(seconds[how], took)
    return PlantFigures(events, batch_size, **{k: events / v for k, v in seconds.items()})


def main(argv: list[str]) -> int:
    """`python -m agent.plant.bench CONNINFO [EVENTS]`: print the rates and ratios."""
    if not argv:
        sys.stderr.write("usage: python -m agent.plant.bench CONNINFO [EVENTS]\n")
        return 2
    events = int(argv[1]) if len(argv) > 1 else 50_000
    with tempfile.TemporaryDirectory() as scratch:
        figures = asyncio.run(measure(argv[0], Path(scratch), events=events))
    rates = {k: round(getattr(figures, k)) for k in ("drain", "insert", "unnest", "copy")}
    report = {"events": figures.events, "batch_size": figures.batch_size, "events_per_s": rates,
              "ratio_to_copy": figures.ratios()}  # fmt: skip
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
