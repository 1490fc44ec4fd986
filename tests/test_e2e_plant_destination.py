"""The `postgres` destination inside the agent: config, the running agent, its page and doctor.

One migrated PostgreSQL for the module; the agent delivers as a role holding only the INSERT
and SELECT `lineside plant migrate` prints. The sink's own behaviour (outages, quarantine, TLS)
is tested in test_postgres_sink.py, crashes in faults/test_plant_store_faults.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
from agent_harness import running_agent, write_config
from destination_support import destination
from plant_support import AGENT_ROLE, Plant
from support import wait_until

from agent.cli.doctor import Status, run_checks
from agent.config import load_config
from sync.postgres_config import PostgresDestinationConfig

if TYPE_CHECKING:
    from pathlib import Path

    from support import Broker, Pty


def store_destination(plant: Plant, *, password_file: Path | None = None, dsn: str = "") -> str:
    return (
        "[[destinations]]\n"
        'name = "plant-store"\n'
        'kind = "postgres"\n'
        f'dsn = "{dsn or plant.cluster.dsn(AGENT_ROLE)}"\n'
        f'password_file = "{password_file or plant.password_file}"\n'
        'sslmode = "disable"\n'
    )


def test_the_config_offers_a_postgres_destination(
    tmp_path: Path, broker: Broker, pty: Pty, plant: Plant
) -> None:
    config = load_config(
        write_config(
            tmp_path, broker, {"dock-in-1": ("inbound", pty)}, extra=store_destination(plant)
        )
    )
    store = config.destinations[1]
    assert isinstance(store, PostgresDestinationConfig)
    assert store.target == f"{AGENT_ROLE}@127.0.0.1:{plant.cluster.port}/lineside"


async def test_the_agent_delivers_scans_to_the_plant_store_once_each(
    tmp_path: Path, broker: Broker, pty: Pty, plant: Plant
) -> None:
    config = write_config(
        tmp_path, broker, {"dock-in-1": ("inbound", pty)}, extra=store_destination(plant)
    )
    async with running_agent(config) as agent:
        for i in range(30):
            pty.write(f"PLANT-{i:03d}\r\n".encode())
        await wait_until(
            lambda: (
                agent.outbox.last_seq >= 30
                and agent.outbox.cursor("plant-store") == agent.outbox.last_seq
            ),
            what="all delivered to the store",
        )
        await agent.outbox.rewind("plant-store", 0)  # every event sent a second time
        await wait_until(
            lambda: agent.outbox.cursor("plant-store") == agent.outbox.last_seq,
            what="delivered again",
        )
        last = agent.outbox.last_seq
    rows = plant.cluster.sql(
        "SELECT seq, type, data->>'raw' FROM lineside.events WHERE node = 'line-3' ORDER BY seq"
    )
    assert [r[0] for r in rows] == list(range(1, last + 1))  # once each, in seq order
    raws = [r[2] for r in rows if r[1] == "goods.received"]
    assert raws == [f"PLANT-{i:03d}" for i in range(30)]


async def test_a_wrong_password_shows_on_the_page_and_in_doctor(
    tmp_path: Path, broker: Broker, pty: Pty, plant: Plant
) -> None:
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("not-it\n")
    config_file = write_config(
        tmp_path,
        broker,
        {"dock-in-1": ("inbound", pty)},
        extra=store_destination(plant, password_file=wrong),
    )
    findings = {f.check: f for f in await run_checks(load_config(config_file))}
    store = findings["destination plant-store"]
    assert store.status is Status.FAIL
    assert f'password authentication failed for user "{AGENT_ROLE}"' in store.detail
    assert "password_file" in store.hint
    assert "not-it" not in store.detail
    async with running_agent(config_file) as agent:
        pty.write(b"WRONG-PW-1\r\n")
        await wait_until(lambda: agent.outbox.last_seq >= 1, what="a scan")
        await wait_until(
            lambda: bool(destination(agent, "plant-store").last_error), what="the error recorded"
        )
        # the backlog is measured about once a second; the broker keeps flowing meanwhile
        await wait_until(lambda: destination(agent, "plant-store").backlog >= 1, what="backlog")
        await wait_until(
            lambda: destination(agent, "plant-broker").delivered >= agent.outbox.last_seq,
            what="the broker destination delivering",
        )
        assert destination(agent, "plant-broker").connected
        await wait_until(lambda: agent.status_url is not None, what="the page up")
        assert agent.status_url is not None
        async with httpx.AsyncClient() as client:
            api = (await client.get(agent.status_url + "api/status")).json()
        status = next(d for d in api["destinations"] if d["name"] == "plant-store")
        assert "plant-store: cannot connect" in status["last_error"]
        assert "password authentication failed" in status["last_error"]
        assert status["backlog"] >= 1


async def test_doctor_passes_a_role_with_only_insert_and_select(
    tmp_path: Path, broker: Broker, pty: Pty, plant: Plant
) -> None:
    granted = plant.cluster.sql(
        "SELECT privilege_type FROM information_schema.role_table_grants "
        "WHERE grantee = %s ORDER BY 1",
        AGENT_ROLE,
    )
    assert granted == [("INSERT",), ("SELECT",)]
    config = load_config(
        write_config(
            tmp_path, broker, {"dock-in-1": ("inbound", pty)}, extra=store_destination(plant)
        )
    )
    findings = {f.check: f for f in await run_checks(config)}
    assert findings["destination plant-store"].status is Status.OK
    assert "lineside.events writable" in findings["destination plant-store"].detail


async def test_doctor_names_a_database_that_does_not_exist(
    tmp_path: Path, broker: Broker, pty: Pty, plant: Plant
) -> None:
    dsn = f"postgresql://{AGENT_ROLE}@127.0.0.1:{plant.cluster.port}/nowhere"
    config = load_config(
        write_config(
            tmp_path,
            broker,
            {"dock-in-1": ("inbound", pty)},
            extra=store_destination(plant, dsn=dsn),
        )
    )
    findings = {f.check: f for f in await run_checks(config)}
    assert findings["destination plant-store"].status is Status.FAIL
    assert 'database "nowhere" does not exist' in findings["destination plant-store"].detail
