"""PostgresSink against the test's own PostgreSQL, as the agent's role, through the publisher."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

import psycopg
import pytest
from certs import Pki, make_pki
from plant_support import (
    AGENT_ROLE,
    Plant,
    draft,
    make_plant,
    migrated,
    payload,
    publishing,
)
from pydantic import ValidationError
from support import wait_until

from agent.plant.schema import agent_grants
from sync.base import Envelope, SinkRejected, SinkUnavailable
from sync.outbox import Outbox
from sync.postgres import PostgresSink
from sync.postgres_config import PostgresDestinationConfig

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from postgres_support import PostgresCluster


@pytest.fixture
async def plant(postgres: PostgresCluster, tmp_path: Path) -> Plant:
    return await make_plant(postgres, tmp_path)


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    async with Outbox(tmp_path / "outbox.db", min_free_bytes=0, destinations=["plant"]) as box:
        yield box


def envelopes(first: int, last: int) -> list[Envelope]:
    out = []
    for seq in range(first, last + 1):
        ident = f"01JDQ2V8W7K3M5N9P0R4{seq:06d}"
        out.append(Envelope(seq, ident, "goods.received", payload(ident, seq), created=0))
    return out


# -- config ----------------------------------------------------------------------------------


def config(**fields: object) -> PostgresDestinationConfig:
    base: dict[str, object] = {"name": "plant", "kind": "postgres"}
    return PostgresDestinationConfig.model_validate(base | fields)


def test_config_defaults_and_target() -> None:
    c = config(dsn="postgresql://lineside_line3@plantdb.local/lineside")
    assert (c.sslmode, c.batch_size, c.types) == ("verify-full", 500, ("*",))
    assert c.target == "lineside_line3@plantdb.local:5432/lineside"
    settings = c.connect_kwargs()
    assert settings["sslrootcert"] == "system"  # the system's trust store by default
    assert "password" not in settings


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"dsn": "postgresql://u:secret@h/db"}, "password do not belong in the dsn"),
        ({"dsn": "postgresql://u@h/db?sslmode=disable"}, "sslmode do not belong"),
        ({"dsn": "postgresql://h/db"}, "must name the user"),
        ({"dsn": "postgresql://u@h"}, "must name the dbname"),
        ({"dsn": "postgresql://u@h/db?nonsense=1"}, "invalid URI query parameter"),
        ({"dsn": "postgresql://u@h/db", "sslmode": "prefer"}, "sslmode"),
        ({"dsn": "postgresql://u@h/db", "sslmode": "verify-ca"}, "needs ca_file"),
        ({"dsn": "postgresql://u@h/db", "cert_file": "/c.pem"}, "go together"),
        (
            {"dsn": "postgresql://u@h/db", "sslmode": "disable", "ca_file": "/ca.pem"},
            "need sslmode other than",
        ),
        ({"dsn": "postgresql://u@h/db", "batch_size": 0}, "batch_size"),
    ],
)
def test_config_refuses(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        config(**fields)


# -- delivery --------------------------------------------------------------------------------


async def test_delivers_in_order_and_moves_the_cursor_after_commit(
    plant: Plant, outbox: Outbox
) -> None:
    await outbox.append_many([draft(n) for n in range(1, 1201)])
    async with publishing(outbox, "plant", lambda: PostgresSink(plant.config(batch_size=500))):
        await wait_until(lambda: outbox.cursor("plant") == 1200, what="cursor at 1200")
    assert [seq for _, seq in plant.stored()] == list(range(1, 1201))
    row = plant.cluster.sql(
        "SELECT site, node, type, source, time, data, clock_synced FROM lineside.events "
        "WHERE seq = 7"
    )[0]
    assert row[:4] == ("plant-a", "line-1", "goods.received", "scanner:dock-in-1")
    assert row[4].isoformat() == "2026-11-24T16:01:02.352000+00:00"
    assert row[5] == {"gtin": "09501101530003", "lot": "L7"}
    assert row[6] is None
    # one transaction per batch, committed in seq order: 500, 500, 200
    stored = plant.cluster.sql(
        "SELECT stored, min(seq), max(seq) FROM lineside.events GROUP BY stored ORDER BY stored"
    )
    assert [(first, last) for _, first, last in stored] == [(1, 500), (501, 1000), (1001, 1200)]


async def test_the_same_event_delivered_twice_makes_one_row(plant: Plant, outbox: Outbox) -> None:
    async with PostgresSink(plant.config()) as sink:
        await sink.send(envelopes(1, 10))
        await sink.send(envelopes(5, 15))  # a lost acknowledgement: re-sent with the same ids
    assert plant.stored() == [(e.id, e.seq) for e in envelopes(1, 15)]
    await outbox.append_many([draft(n) for n in range(1, 16)])  # the same ids and payloads
    async with publishing(outbox, "plant", lambda: PostgresSink(plant.config())) as publisher:
        await wait_until(lambda: outbox.cursor("plant") == 15, what="cursor at 15")
        await publisher.resend_from(0)  # an operator re-sends everything
        await wait_until(lambda: publisher.health.delivered >= 30, what="re-sent")
    assert plant.count() == 15


async def test_a_bad_row_alone_is_quarantined(plant: Plant, outbox: Outbox) -> None:
    plant.cluster.sql(
        "ALTER TABLE lineside.events ADD CONSTRAINT no_test_lots CHECK (data->>'lot' <> 'BAD')"
    )
    drafts = [draft(n) for n in range(1, 41)]
    drafts[9] = draft(10, {"lot": "BAD"})  # refused by a constraint
    drafts[22] = draft(23, {"raw": "nul \u0000 in a scan"})  # jsonb refuses \u0000
    drafts[30] = draft(31, raw=b"not json at all")  # not an envelope
    drafts[35] = draft(
        36, raw=b'{"id": "01JDQ2V8W7K3M5N9P0R4000036", "seq": 987654321987, "data": {}}'
    )  # no fields
    await outbox.append_many(drafts)
    async with publishing(outbox, "plant", lambda: PostgresSink(plant.config())) as publisher:
        await wait_until(lambda: outbox.cursor("plant") == 40, what="cursor at 40")
        await wait_until(lambda: publisher.health.quarantined == 4, what="4 quarantined")
    parked = {q.seq: (q.id, q.reason) for q in await outbox.quarantined("plant")}
    assert sorted(parked) == [10, 23, 31, 36]
    why = {
        10: 'violates check constraint "no_test_lots"',
        23: "unsupported Unicode escape sequence (22P05)",
        31: "invalid input syntax for type json (22P02)",
        36: 'null value in column "site"',
    }
    for seq, (ident, reason) in parked.items():
        assert reason.startswith("the plant database refused 4 event(s): "), reason
        assert re.search(f"{ident}: [^;]*{re.escape(why[seq])}", reason), reason  # its own
    assert [seq for _, seq in plant.stored()] == [s for s in range(1, 41) if s not in parked]


async def test_database_down_and_back_loses_nothing(
    plant: Plant, outbox: Outbox, postgres: PostgresCluster
) -> None:
    await scenario_outage(plant, outbox, postgres, kill=False)


async def test_database_killed_and_back_loses_nothing(
    plant: Plant, outbox: Outbox, postgres: PostgresCluster
) -> None:
    await scenario_outage(plant, outbox, postgres, kill=True)


async def scenario_outage(
    plant: Plant, outbox: Outbox, postgres: PostgresCluster, *, kill: bool
) -> None:
    """Events keep coming while PostgreSQL stops (or is SIGKILLed) mid-stream and comes back."""
    appended = 0
    stop = asyncio.Event()

    async def line() -> None:
        nonlocal appended
        while not stop.is_set():
            await outbox.append_many([draft(n) for n in range(appended + 1, appended + 21)])
            appended += 20
            await asyncio.sleep(0.005)  # a line's pace, not a wait for anything

    async with publishing(outbox, "plant", lambda: PostgresSink(plant.config(batch_size=50))) as p:
        producer = asyncio.create_task(line(), name="test-line")
        try:
            await wait_until(lambda: outbox.cursor("plant") >= 400, what="flowing")
            postgres.kill() if kill else postgres.stop()
            await wait_until(lambda: not p.health.connected, what="down noticed")
            mark = appended
            await wait_until(lambda: appended >= mark + 200, what="events during the outage")
            await wait_until(lambda: p.health.backlog >= 200, what="the backlog growing")
            assert "plant:" in (p.health.last_error or "")
            postgres.start()
            await wait_until(lambda: p.health.connected, what="reconnected")
        finally:
            stop.set()
            await producer
        await wait_until(lambda: outbox.cursor("plant") == appended, what="all delivered")
    assert [seq for _, seq in plant.stored()] == list(range(1, appended + 1))  # once each
    # in order: a later seq was never committed before an earlier one
    assert postgres.sql(
        "SELECT count(*) FROM (SELECT stored < lag(stored) OVER (ORDER BY seq) AS back "
        "FROM lineside.events) t WHERE back"
    ) == [(0,)]


async def test_an_idle_link_lost_shows_at_once(
    plant: Plant, outbox: Outbox, postgres: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
    async with publishing(outbox, "plant", lambda: PostgresSink(plant.config())) as publisher:
        await wait_until(lambda: publisher.health.connected, what="connected")
        postgres.stop()  # nothing to send: only the watched socket can tell
        await wait_until(lambda: not publisher.health.connected, timeout=5, what="seen down")
    down = [r.getMessage() for r in caplog.records if "is down" in r.getMessage()]
    assert down[0].startswith("destination plant is down: plant: connection lost:"), down


# -- the database refusing ---------------------------------------------------------------------


async def test_a_read_only_database_grows_the_backlog_and_loses_nothing(
    plant: Plant, outbox: Outbox, postgres: PostgresCluster
) -> None:
    postgres.sql("ALTER DATABASE lineside SET default_transaction_read_only = on")
    await outbox.append_many([draft(n) for n in range(1, 31)])
    async with publishing(outbox, "plant", lambda: PostgresSink(plant.config())) as publisher:
        await wait_until(lambda: publisher.health.last_error is not None, what="an error")
        assert "plant: the database is read-only" in (publisher.health.last_error or "")
        await wait_until(lambda: publisher.health.backlog == 30, what="backlog")
        assert publisher.health.quarantined == 0
        with postgres.admin(database="postgres") as conn:  # sessions of lineside are read-only
            conn.execute("ALTER DATABASE lineside RESET default_transaction_read_only")
        await wait_until(lambda: outbox.cursor("plant") == 30, what="delivered")
    assert plant.count() == 30


async def test_a_full_disk_grows_the_backlog(
    plant: Plant, outbox: Outbox, postgres: PostgresCluster
) -> None:
    # The server answers as it does when its disk is full (SQLSTATE 53100), from a trigger.
    postgres.sql(
        "CREATE FUNCTION lineside.disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "RAISE EXCEPTION 'could not extend file: No space left on device' "
        "USING ERRCODE = 'disk_full'; END $$"
    )
    postgres.sql(
        "CREATE TRIGGER disk_full BEFORE INSERT ON lineside.events "
        "FOR EACH ROW EXECUTE FUNCTION lineside.disk_full()"
    )
    await outbox.append_many([draft(n) for n in range(1, 11)])
    async with publishing(outbox, "plant", lambda: PostgresSink(plant.config())) as publisher:
        await wait_until(lambda: publisher.health.last_error is not None, what="an error")
        assert "plant: the database's disk is full" in (publisher.health.last_error or "")
        assert publisher.health.quarantined == 0
        postgres.sql("DROP TRIGGER disk_full ON lineside.events")
        await wait_until(lambda: outbox.cursor("plant") == 10, what="delivered")
    assert plant.count() == 10


async def test_a_batch_stuck_behind_a_lock_times_out_and_is_sent_again(
    plant: Plant, outbox: Outbox, postgres: PostgresCluster
) -> None:
    await outbox.append_many([draft(n) for n in range(1, 11)])
    with postgres.admin() as holder:
        holder.autocommit = False
        holder.execute("LOCK TABLE lineside.events IN ACCESS EXCLUSIVE MODE")
        sink = lambda: PostgresSink(plant.config(statement_timeout_s=0.5))  # noqa: E731
        async with publishing(outbox, "plant", sink) as publisher:
            await wait_until(lambda: publisher.health.last_error is not None, what="timeout")
            assert "plant: timed out" in (publisher.health.last_error or "")
            holder.rollback()
            await wait_until(lambda: outbox.cursor("plant") == 10, what="delivered")
    assert plant.count() == 10


# -- clear errors at connect -------------------------------------------------------------------


async def connect_error(config: PostgresDestinationConfig) -> str:
    with pytest.raises(SinkUnavailable) as caught:
        async with PostgresSink(config):
            pass
    message = str(caught.value)
    assert "\n" not in message
    return message


async def test_wrong_password_names_the_destination_and_the_reason(
    plant: Plant, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("nope\n")
    message = await connect_error(plant.config(password_file=str(wrong)))
    port = plant.cluster.port
    assert message.startswith(f"plant: cannot connect to {AGENT_ROLE}@127.0.0.1:{port}/lineside:")
    assert f'password authentication failed for user "{AGENT_ROLE}"' in message
    assert "connection to server" not in message  # libpq's preamble, saying it all again
    assert "nope" not in message


async def test_wrong_dsn_names_the_reason(plant: Plant, tmp_path: Path) -> None:
    port = plant.cluster.port
    no_db = plant.config(dsn=f"postgresql://{AGENT_ROLE}@127.0.0.1:{port}/nowhere")
    assert 'database "nowhere" does not exist' in await connect_error(no_db)
    closed = plant.config(dsn=f"postgresql://{AGENT_ROLE}@127.0.0.1:1/lineside")
    assert "Connection refused" in await connect_error(closed)
    missing = plant.config(password_file=str(tmp_path / "absent.pw"))
    assert "plant: cannot read the password file" in await connect_error(missing)


async def test_an_unmigrated_database_or_a_role_without_grants_is_named(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    postgres.create_role("fresh", "pw")
    pw = tmp_path / "pw"
    pw.write_text("pw")
    fresh = config(dsn=postgres.dsn("fresh"), password_file=str(pw), sslmode="disable")
    assert "run `lineside plant migrate`" in await connect_error(fresh)
    await migrated(postgres)
    message = await connect_error(fresh)
    assert "permission denied for schema lineside" in message
    assert "grant the statements `lineside plant migrate` prints" in message
    postgres.sql("GRANT USAGE ON SCHEMA lineside TO fresh")
    assert "may not INSERT into lineside.events" in await connect_error(fresh)


async def test_an_unparseable_payload_is_rejected_not_raised(plant: Plant) -> None:
    bad = Envelope(1, "X1", "t", b"\xff\xfe", created=0)
    async with PostgresSink(plant.config()) as sink:
        with pytest.raises(SinkRejected) as caught:
            await sink.send([bad, *envelopes(2, 3)])
    assert caught.value.ids == ("X1",)
    assert plant.count() == 2


async def test_the_agent_role_cannot_change_the_schema_through_the_sink(plant: Plant) -> None:
    async with PostgresSink(plant.config()) as sink:
        await sink.send(envelopes(1, 1))
    async with await psycopg.AsyncConnection.connect(
        plant.cluster.dsn(AGENT_ROLE), password=plant.password_file.read_text().strip()
    ) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("ALTER TABLE lineside.events DROP CONSTRAINT events_id_time_key")


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture
async def tls_plant(postgres: PostgresCluster, tmp_path: Path) -> tuple[Plant, Pki]:
    """The plant database over TLS only, its certificate signed by a test CA."""
    pki = make_pki(tmp_path / "pki")
    postgres.stop()
    postgres.enable_tls(pki.server_cert, pki.server_key, pki.ca_cert)
    postgres.settings["listen_addresses"] = "'127.0.0.1,127.0.0.2'"
    postgres.write_hba(
        "local all all trust\n"
        "hostssl all test-ca-client 127.0.0.0/8 cert\n"  # the client certificate's CN
        "hostssl all all 127.0.0.0/8 scram-sha-256\n"
        "hostnossl all all 127.0.0.0/8 reject\n"
    )
    postgres.start()
    pki.client_key.chmod(0o600)  # libpq refuses a key others may read
    return await make_plant(postgres, tmp_path), pki


async def test_verify_full_against_the_plant_ca(tls_plant: tuple[Plant, Pki]) -> None:
    plant, pki = tls_plant
    for host in ("127.0.0.1", "localhost"):
        dsn = plant.cluster.dsn(AGENT_ROLE, host=host)
        tls = plant.config(dsn=dsn, sslmode="verify-full", ca_file=str(pki.ca_cert))
        async with PostgresSink(tls) as sink:
            await sink.send(envelopes(1, 5))
    assert plant.count() == 5
    plain = await connect_error(plant.config())  # sslmode disable: refused by pg_hba
    assert "no encryption" in plain


async def test_tls_failures_are_one_clear_line(
    tls_plant: tuple[Plant, Pki], tmp_path: Path
) -> None:
    plant, pki = tls_plant
    other = make_pki(tmp_path / "other", name="other-ca")
    wrong_ca = plant.config(sslmode="verify-full", ca_file=str(other.ca_cert))
    assert "certificate verify failed" in await connect_error(wrong_ca)
    aside = plant.cluster.dsn(AGENT_ROLE, host="127.0.0.2")  # not a name in the certificate
    wrong_name = plant.config(dsn=aside, sslmode="verify-full", ca_file=str(pki.ca_cert))
    assert 'does not match host name "127.0.0.2"' in await connect_error(wrong_name)
    ca_only = plant.config(dsn=aside, sslmode="verify-ca", ca_file=str(pki.ca_cert))
    async with PostgresSink(ca_only) as sink:  # verify-ca checks the signature, not the name
        await sink.send(envelopes(1, 1))


async def test_a_client_certificate_logs_in(tls_plant: tuple[Plant, Pki]) -> None:
    plant, pki = tls_plant
    role = "test-ca-client"
    plant.cluster.sql(f'CREATE ROLE "{role}" LOGIN')  # no password: the certificate is the login
    for statement in agent_grants(role):
        plant.cluster.sql(statement)
    by_cert = PostgresDestinationConfig.model_validate(
        {
            "name": "plant",
            "kind": "postgres",
            "dsn": plant.cluster.dsn(role),
            "sslmode": "verify-full",
            "ca_file": str(pki.ca_cert),
            "cert_file": str(pki.client_cert),
            "key_file": str(pki.client_key),
        }
    )
    async with PostgresSink(by_cert) as sink:
        await sink.send(envelopes(1, 3))
    assert plant.count() == 3
