"""The plant store under faults: PostgreSQL stopped and SIGKILLed, the agent SIGKILLed, mid-stream.

A real agent (`lineside run` as a child process) with a pty scanner delivers to the test's own
PostgreSQL as a role holding only the INSERT and SELECT that `lineside plant migrate` prints.
While reads keep coming, the database is stopped and restarted, then the agent is SIGKILLed
mid-batch and started again, then the database is SIGKILLed (a power cut of its server) and
started again. What the store then holds is checked by the oracle, as for the broker: 0 lost,
0 unexpected, 0 distorted, and — the store's own promise — 0 duplicated (one row per event id).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent_harness import AgentProcess, write_config
from support import wait_until

from faults.conftest import size
from faults.oracle import Counts, Delivery, check, scan_delivery
from faults.test_link_faults import Scanning

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from plant_support import Plant
    from support import Broker, Pty

SOURCE = "scanner:dock-in-1"


def postgres_destination(plant: Plant) -> str:
    """The agent's `[[destinations]]` entry for the plant store (its role, its password file)."""
    return (
        "[[destinations]]\n"
        'name = "plant-store"\n'
        'kind = "postgres"\n'
        f'dsn = "{plant.cluster.dsn("lineside_line1")}"\n'
        f'password_file = "{plant.password_file}"\n'
        'sslmode = "disable"\n'
        "batch_size = 50\n"
    )


def stored_deliveries(plant: Plant) -> list[Delivery]:
    """Every stored scan, as the oracle reads a delivered event (the agent's own events aside)."""
    rows = plant.cluster.sql(
        "SELECT id, type, source, data::text FROM lineside.events "
        "WHERE node = 'line-3' AND source = %s",
        SOURCE,
    )
    return [
        scan_delivery(
            (f'{{"id":"{i}","type":"{t}","source":"{s}","data":{d}}}').encode(),
        )
        for i, t, s, d in rows
    ]


async def test_store_loses_and_doubles_nothing_through_database_and_agent_crashes(
    tmp_path: Path,
    broker: Broker,
    pty: Pty,
    plant: Plant,
    report: Callable[[str, Counts], None],
) -> None:
    rounds = size(20, 400)
    config = write_config(
        tmp_path, broker, {"dock-in-1": ("inbound", pty)}, extra=postgres_destination(plant)
    )
    proc = AgentProcess(config, tmp_path / "agent.log")
    scanning = Scanning(pty, "P")
    cluster = plant.cluster

    def stored() -> int:
        return int(cluster.sql("SELECT count(*) FROM lineside.events WHERE node = 'line-3'")[0][0])

    async def up() -> None:
        proc.start()
        await wait_until(
            lambda: proc.log().count("scanner dock-in-1: connected") >= starts,
            timeout=30,
            what="scanner open",
        )

    starts = 1
    await up()
    try:
        await scanning.scan(5)
        await wait_until(lambda: stored() >= 1, timeout=30, what="first rows stored")
        cluster.stop()  # a clean shutdown of the database, mid-stream
        for _ in range(rounds):
            await scanning.scan(5)
        cluster.start()
        for _ in range(rounds):
            await scanning.scan(5, pause=0.002)
        await scanning.settle()
        proc.kill()  # SIGKILL of the agent, batches in flight
        starts += 1
        await up()
        for _ in range(rounds):
            await scanning.scan(5)
        cluster.kill()  # SIGKILL of every database process: a power cut of its server
        for _ in range(rounds):
            await scanning.scan(5)
        cluster.start()
        for _ in range(rounds):
            await scanning.scan(5)
        await scanning.settle()
        acked = len(scanning.ledger.acked)
        await wait_until(lambda: stored() >= acked, timeout=60, what="every read stored")
    finally:
        proc.terminate()
    counts = check(scanning.ledger, stored_deliveries(plant))
    rows, distinct = cluster.sql(
        "SELECT count(*), count(DISTINCT id) FROM lineside.events WHERE node = 'line-3'"
    )[0]
    counts.duplicated = int(rows) - int(distinct)
    report("plant store: PostgreSQL stopped and killed, agent killed", counts)
    assert counts.ok, counts.problems[:10]
    assert counts.duplicated == 0
    assert counts.delivered >= rounds * 5 * 4
