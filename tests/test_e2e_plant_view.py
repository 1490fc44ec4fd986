"""`lineside plant serve` over three real agents: the fleet, reconciliation, trace and reports.

The agents (`plant_agents`) deliver to the module's PostgreSQL and publish their retained state
with its `health` on the test's mosquitto; the plant view serves on a free port and follows
that broker. Then: every node on the fleet with its health and a complete store; the lot
reconciled across line-1 and dock-out; a gap shown once rows are deleted (events lost
upstream); an agent killed shows offline within 15 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from typing import TYPE_CHECKING, Any

import httpx
from agent_harness import AgentProcess
from plant_agents import PALLET_OUT, node_config, plant_config, three_nodes
from support import Pty

from agent.plant.config import load_plant_config
from agent.plant.server import serve_plant

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    import pytest
    from plant_support import Plant
    from support import Broker


@contextlib.asynccontextmanager
async def plant_view(config: Path) -> AsyncIterator[httpx.AsyncClient]:
    """`lineside plant serve` in this loop on a free port; a client of it."""
    loaded = load_plant_config(config)
    stop = asyncio.Event()
    url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_plant(loaded, stop, ready=url.set_result), name="plant-view")
    try:
        async with asyncio.timeout(20):
            either: list[asyncio.Future[Any]] = [task, url]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            await task
        async with httpx.AsyncClient(base_url=url.result(), timeout=10) as client:
            yield client
    finally:
        stop.set()
        async with asyncio.timeout(20):
            await task


async def until(check: Callable[[], Awaitable[bool]], timeout: float) -> None:  # noqa: ASYNC109
    """Ask the HTTP API until `check` holds (TimeoutError after `timeout` seconds)."""
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(0.2)


async def fleet_of(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await client.get("/api/fleet")
    assert response.status_code == 200, response.text
    return {n["node"]: n for n in response.json()}


async def test_fleet_reconciliation_trace_reports_and_gaps(
    tmp_path: Path, broker: Broker, plant: Plant
) -> None:
    # every fleet request reads each node whole: rows deleted by hand show at once
    config = plant_config(tmp_path, plant, broker, listen="127.0.0.1:0", fleet_recheck_s="0")
    async with three_nodes(tmp_path, broker, plant) as nodes, plant_view(config) as client:
        last = {name: agent.outbox.last_seq for name, agent in nodes.agents.items()}
        fleet: dict[str, dict[str, Any]] = {}

        async def settled() -> bool:
            nonlocal fleet
            fleet = await fleet_of(client)
            return all(
                fleet.get(n, {}).get("last_seq") == last[n]
                and (fleet[n].get("backlog") or {}).get("plant-store") == 0
                for n in last
            )

        try:
            await until(settled, 20)
        except TimeoutError:
            raise AssertionError(f"fleet {fleet} vs {last}") from None
        for node, entry in fleet.items():
            assert entry["online"] is True, entry
            assert entry["stored_seq"] >= last[node]
            assert entry["gaps"] == []
            assert entry["lag_s"] is not None
            assert entry["last_seen"].endswith("Z")
            assert entry["alarms"] is not None
            assert entry["devices"][node] is True  # its scanner (the id is the node name here)
        assert fleet["line-1"]["devices"]["filler"] is True

        response = await client.get("/api/reconciliation")
        assert response.status_code == 200, response.text
        [lot] = response.json()
        assert (lot["lot"], lot["plc_quantity"], lot["units_shipped"]) == (nodes.lot, 120, 120)
        assert (lot["codes_stamped"], lot["status"]) == (1, "balanced")
        assert (lot["made_at"], lot["shipped_from"]) == (["line-1"], ["dock-out"])
        assert lot["units_packed"] is None  # no packing station in this plant
        response = await client.get("/api/reconciliation", params={"status": "discrepancy"})
        assert response.json() == []
        assert (await client.get("/api/reconciliation?status=bogus")).status_code == 400

        response = await client.get(f"/api/trace/{PALLET_OUT}")
        assert response.status_code == 200, response.text
        assert response.json()["nodes"] == ["dock-in", "dock-out", "line-1"]
        assert (await client.get("/api/trace/NO-SUCH")).status_code == 404

        response = await client.get("/api/report", params={"lot": nodes.lot, "format": "fsma204"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(response.text, newline="")))
        assert [r["cte"] for r in rows] == ["receiving", "receiving", "transformation", "shipping"]
        assert "content-security-policy" in response.headers
        assert (await client.get("/api/report", params={"lot": "NOPE"})).status_code == 404
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        metrics = (await client.get("/metrics")).text
        assert 'lineside_plant_node_online{node="dock-in",site="plant-a"} 1.0' in metrics
        bad_host = await client.get("/api/fleet", headers={"Host": "evil.example"})
        assert bad_host.status_code == 400

        # events lost upstream: the fleet shows the missing range
        plant.cluster.sql(
            "DELETE FROM lineside.events WHERE node = 'line-1' AND seq BETWEEN 2 AND 3"
        )
        fleet = await fleet_of(client)
        assert fleet["line-1"]["gaps"] == [[2, 3]]
        assert fleet["line-1"]["stored_seq"] == 1
        assert fleet["dock-out"]["gaps"] == []


async def test_a_node_going_offline_shows_within_15_s(
    tmp_path: Path, broker: Broker, plant: Plant
) -> None:
    pty = Pty(tmp_path / "tty")
    pty.plug()
    agent = AgentProcess(
        node_config(tmp_path, "dock-9", broker, role="inbound", pty=pty, extra=""),
        tmp_path / "agent.log",
    )
    config = plant_config(tmp_path, plant, broker, listen="127.0.0.1:0")
    try:
        async with plant_view(config) as client:
            agent.start()

            async def online() -> bool | None:
                state = (await fleet_of(client)).get("dock-9", {}).get("online")
                return state if isinstance(state, bool) else None

            async def up() -> bool:
                return await online() is True

            async def down() -> bool:
                return await online() is False

            await until(up, 30)
            agent.kill()  # SIGKILL: the broker publishes the agent's will
            await until(down, 15)
    finally:
        agent.kill()
        pty.unplug()


async def test_actions_need_a_login_csrf_and_the_same_origin(
    tmp_path: Path, plant: Plant, caplog: pytest.LogCaptureFixture
) -> None:
    password = tmp_path / "plant-admin.pw"
    password.write_text("plant-admin\n")
    config = plant_config(tmp_path, plant, listen="127.0.0.1:0", admin_password_file=str(password))
    async with plant_view(config) as client:
        origin = {"Origin": str(client.base_url).rstrip("/")}
        assert (await client.post("/api/actions/partitions", headers=origin)).status_code == 401
        cross = {"Origin": "http://evil.example"}
        login = await client.post("/api/login", json={"password": "plant-admin"}, headers=cross)
        assert login.status_code == 403
        login = await client.post("/api/login", json={"password": "plant-admin"}, headers=origin)
        assert login.status_code == 200, login.text
        token = login.json()["csrf_token"]
        refused = await client.post("/api/actions/partitions", headers=origin)
        assert refused.status_code == 403  # no CSRF token
        done = await client.post(
            "/api/actions/partitions", headers={**origin, "X-CSRF-Token": token}
        )
        assert done.status_code == 200, done.text
        assert done.json()["ok"] is True
        big = await client.post("/api/login", content=b"x" * 10_000, headers=origin)
        assert big.status_code == 413
        assert (await client.get("/api/fleet")).status_code == 200  # reads need no login
        assert (await client.get("/api/trace/" + "x" * 300)).status_code == 400
        # a wrong password blocks its address at once, as on a node's page (one login verdict)
        wrong = await client.post("/api/login", json={"password": "guess"}, headers=origin)
        assert wrong.status_code == 401
        blocked = await client.post("/api/login", json={"password": "plant-admin"}, headers=origin)
        assert blocked.status_code == 429, "answered at once, the password not looked at"
        assert int(blocked.headers["Retry-After"]) >= 1
        assert "failed login from 127.0.0.1" in caplog.text
