"""The status HTTP API of a REAL running agent: pty scanner, PLC simulator, mosquitto, SQLite.

Every path of the contract through httpx against the agent's own uvicorn, `/healthz` going 503
while the broker is down and 200 again after, metrics with real numbers, and the control actions
with their login, CSRF and Origin checks. `line_agent` is also what the browser tests run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from agent_harness import running_agent, write_config
from support import subscriber, wait_until

from agent.web.app import CONTENT_SECURITY_POLICY
from drivers.simulators.modbus_plc import CODE, FillingLineSimulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from support import Broker, Pty

    from agent.runtime.agent import Agent

PASSWORD = "line3-admin"
GTIN = "09501101530003"
GOOD_SCAN = b"]d2010950110153000310LOT42\r\n"
BAD_SCAN = b"]C10109501101530004\r\n"  # wrong check digit: scan.rejected
EVENTS = "lineside/v1/plant-a/line-3/"

Status = dict[str, Any]


def line_config(
    tmp_path: Path,
    broker: Broker,
    pty: Pty,
    plc_port: int,
    *,
    password: bool,
    role: str = "inbound",
) -> Path:
    """The harness config plus a filling-line PLC, the line's product and an admin password."""
    extra = f"""
[line]
gtin = "{GTIN}"

[[plcs]]
id = "filler"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {plc_port}
poll_ms = 50

[plcs.batch]
trigger = "coil:0"
quantity = "holding:100:uint32"
ack = "coil:1"
write_code_to = "holding:200:string:64"

[plcs.params]
fill_temp_c = "holding:110:float32"
line_speed = "holding:112:uint16"
"""
    path = write_config(tmp_path, broker, {"dock-in-1": (role, pty)}, extra=extra)
    if password:
        pw = tmp_path / "admin.pw"
        pw.write_text(PASSWORD + "\n")
        text = path.read_text().replace(
            'listen = "127.0.0.1:0"', f'listen = "127.0.0.1:0"\nadmin_password_file = "{pw}"'
        )
        path.write_text(text)
    return path


@dataclass
class LineAgent:
    """A running agent with one inbound scanner and a filling-line PLC, and an HTTP client."""

    agent: Agent
    plc: FillingLineSimulator
    pty: Pty
    http: httpx.AsyncClient
    url: str

    @property
    def origin(self) -> dict[str, str]:
        """The Origin header the agent's own page sends."""
        return {"Origin": self.url.rstrip("/")}

    async def status(self) -> Status:
        r = await self.http.get("/api/status")
        assert r.status_code == 200, r.text
        body: Status = r.json()
        return body

    async def metrics(self) -> str:
        r = await self.http.get("/metrics")
        assert r.status_code == 200, r.text
        return r.text

    async def until(self, predicate: Callable[[Status], bool], what: str) -> Status:
        """Ask `/api/status` until `predicate` holds (the agent's state, seen from outside)."""
        seen: Status = {}

        async def holds() -> bool:
            nonlocal seen
            seen = await self.status()
            return predicate(seen)

        try:
            await poll(holds, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last status: {json.dumps(seen)[:1500]}") from None
        return seen

    async def complete_batch(self, quantity: int) -> str:
        """Let the PLC complete a batch and wait for the agent's handshake; the trace code."""
        before = self.agent.batch_lines.named(None).completed
        await self.plc.complete_batch(quantity)
        await wait_until(
            lambda: self.agent.batch_lines.named(None).completed == before + 1, what="batch stamped"
        )
        await wait_until(lambda: bool(self.plc.last_code), what="code written back")
        return str(self.plc.value(CODE))


async def poll(check: Callable[[], Any], what: str, timeout: float = 20) -> None:  # noqa: ASYNC109
    """Await `check()` until it is true, failing after `timeout` s (state behind HTTP)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def line_agent(
    tmp_path: Path, broker: Broker, pty: Pty, *, password: bool = True, role: str = "inbound"
) -> AsyncIterator[LineAgent]:
    """The agent of `line_config`, running, with its PLC and scanner connected."""
    async with FillingLineSimulator(port=0, auto=False, handshake=True) as plc:
        config = line_config(tmp_path, broker, pty, plc.port, password=password, role=role)
        async with running_agent(config) as agent:
            await wait_until(lambda: agent.status_url is not None, what="status page up")
            await wait_until(
                lambda: all(line.health.connected for line in agent.lines), what="PLC connected"
            )
            await wait_until(
                lambda: all(p.health.connected for p in agent.publishers), what="broker connected"
            )
            assert agent.status_url is not None
            async with httpx.AsyncClient(
                base_url=agent.status_url, timeout=10, trust_env=False
            ) as http:

                async def healthy() -> bool:  # the monitor re-evaluates health once a second
                    return (await http.get("/healthz")).status_code == 200

                await poll(healthy, "/healthz 200 once everything is connected")
                yield LineAgent(agent, plc, pty, http, agent.status_url)


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of one Prometheus sample, None if absent."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$")
    for line in metrics.splitlines():
        m = pattern.match(line)
        if m and ",".join(sorted((m.group(1) or "").split(","))) == want:
            return float(m.group(2))
    return None


# --- reads -------------------------------------------------------------------------------


async def test_every_read_path_on_the_running_agent(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    async with line_agent(tmp_path, broker, pty) as line:
        http = line.http
        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert "unsafe-inline" not in page.headers["content-security-policy"]
        assert '<script src="/static/app.js"' in page.text
        for asset in ("/static/app.js", "/static/i18n.js", "/static/app.css"):
            assert (await http.get(asset)).status_code == 200, asset

        health = await http.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        assert health.headers["cache-control"] == "no-store"

        line.pty.write(GOOD_SCAN)
        line.pty.write(BAD_SCAN)
        code = await line.complete_batch(quantity=240)
        status = await line.until(
            lambda s: len(s["recent_scans"]) == 2 and s["recent_batches"], "scans and a batch"
        )

        assert status["agent"]["site"] == "plant-a"
        assert status["agent"]["node"] == "line-3"
        devices = {d["id"]: d for d in status["devices"]}
        assert devices["dock-in-1"]["kind"] == "scanner"
        assert devices["dock-in-1"]["connected"] is True
        assert devices["dock-in-1"]["last_seen"] is not None
        assert devices["filler"]["kind"] == "plc"
        assert devices["filler"]["role"] == "handshake"
        assert devices["filler"]["connected"] is True
        (dest,) = status["destinations"]
        assert dest["name"] == "plant-broker"
        assert dest["kind"] == "mqtt"
        assert dest["connected"] is True
        assert {"backlog", "backlog_bytes", "oldest_undelivered_age_s"} <= set(dest)

        newest, oldest = status["recent_scans"]
        assert oldest["type"] == "goods.received"
        assert oldest["gtin"] == GTIN
        assert oldest["lot"] == "LOT42"
        assert oldest["reason"] is None
        assert newest["type"] == "scan.rejected"
        assert "check digit" in newest["reason"]

        (done,) = status["recent_batches"]
        assert done["trace_code"] == code
        assert done["quantity"] == 240
        assert code.startswith(f"(01){GTIN}(10)")
        batch = status["batch"]
        assert batch is not None
        assert batch["gtin"] == GTIN
        assert batch["lot"] != done["lot"], "the next batch is open"

        r = await http.get("/api/events", params={"limit": 50})
        assert r.status_code == 200
        events = r.json()
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(seqs, reverse=True), "newest first"
        types = [e["type"] for e in events]
        assert {"goods.received", "scan.rejected", "batch.completed", "batch.started"} <= set(types)
        completed = next(e for e in events if e["type"] == "batch.completed")
        assert completed["data"]["trace_code"] == code
        assert completed["data"]["quantity"] == 240
        assert 3.5 < completed["data"]["params"]["fill_temp_c"] < 4.5
        r = await http.get("/api/events", params={"type": "scan.rejected", "limit": 5})
        assert [e["type"] for e in r.json()] == ["scan.rejected"]
        r = await http.get("/api/events", params={"limit": 1})
        assert len(r.json()) == 1
        assert (await http.get("/api/events", params={"limit": 0})).status_code == 422

        r = await http.get(f"/api/trace/{code}")
        assert r.status_code == 200, r.text
        assert r.json()["batches"][0]["trace_code"] == code
        r = await http.get("/api/trace/(01)00000000000000(21)NOPE")
        assert r.status_code == 404, r.text

        metrics = await line.metrics()
        assert sample(metrics, "lineside_events_total", type="goods.received") == 1
        assert sample(metrics, "lineside_events_total", type="scan.rejected") == 1
        assert sample(metrics, "lineside_events_total", type="batch.completed") == 1
        assert sample(metrics, "lineside_scans_rejected_total", device="dock-in-1") == 1
        assert sample(metrics, "lineside_device_up", device="dock-in-1") == 1
        assert sample(metrics, "lineside_device_up", device="filler") == 1
        assert sample(metrics, "lineside_destination_up", destination="plant-broker") == 1
        commits = sample(metrics, "lineside_outbox_commit_seconds_count")
        assert commits is not None
        assert commits >= 3
        await wait_until(lambda: line.agent.publishers[0].health.delivered >= 4, what="delivered")
        metrics = await line.metrics()
        acks = sample(metrics, "lineside_publish_latency_seconds_count", destination="plant-broker")
        assert acks is not None
        assert acks >= 1
        assert r.headers["cache-control"] == "no-store"


async def test_healthz_503_while_the_broker_is_down_then_200(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    async with line_agent(tmp_path, broker, pty) as line:
        http = line.http
        assert (await http.get("/healthz")).status_code == 200
        broker.stop()
        # An idle publisher notices the lost link at its next send (see the report: the sink
        # has no way to tell it sooner), so the line keeps scanning as it would.
        for i in range(3):
            line.pty.write(f"WHILE-DOWN-{i}\r\n".encode())
        down: list[httpx.Response] = []

        async def unhealthy() -> bool:
            r = await http.get("/healthz")
            down[:] = [r]
            return r.status_code == 503

        await poll(unhealthy, "/healthz 503", timeout=15)  # the contract: within 15 s
        body = down[0].json()
        assert body["status"] == "down"
        assert any(
            reason.startswith("destination plant-broker not connected: ")
            for reason in body["reasons"]
        ), body

        status = await line.until(
            lambda s: (
                s["destinations"][0]["backlog"] >= 3
                and (s["destinations"][0]["oldest_undelivered_age_s"] or 0) > 0
            ),
            "backlog measured",
        )
        dest = status["destinations"][0]
        assert dest["connected"] is False
        assert dest["last_error"]
        metrics = await line.metrics()
        backlog = sample(metrics, "lineside_backlog_events", destination="plant-broker")
        assert backlog is not None
        assert backlog >= 3
        age = sample(metrics, "lineside_oldest_undelivered_age_seconds", destination="plant-broker")
        assert age is not None
        assert age > 0
        assert sample(metrics, "lineside_destination_up", destination="plant-broker") == 0

        broker.start()
        async with subscriber(broker, EVENTS + "#") as got:

            async def healthy() -> bool:
                return (await http.get("/healthz")).status_code == 200

            await poll(healthy, "/healthz 200 after the broker is back", timeout=30)
            await line.until(lambda s: s["destinations"][0]["backlog"] == 0, "backlog drained")
            await got.wait_for(
                lambda g: {"WHILE-DOWN-2"} <= {p["data"].get("raw") for p in g.payloads(is_event)}
            )
        metrics = await line.metrics()
        assert sample(metrics, "lineside_backlog_events", destination="plant-broker") == 0
        assert sample(metrics, "lineside_destination_up", destination="plant-broker") == 1


async def test_devices_down_and_back_in_status_alarms_and_metrics(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    async with line_agent(tmp_path, broker, pty) as line:
        line.pty.unplug()
        async with line.plc.stopped():
            status = await line.until(
                lambda s: "device:filler" in {a["id"] for a in s["alarms"]}, "PLC alarm"
            )
            devices = {d["id"]: d for d in status["devices"]}
            assert devices["filler"]["connected"] is False
            assert devices["filler"]["disconnected_since"] is not None
            assert devices["filler"]["last_error"]
            r = await line.http.get("/healthz")
            assert r.status_code == 503
            assert any("filler" in reason for reason in r.json()["reasons"])

            async def scanner_down() -> bool:
                metrics = await line.metrics()
                return sample(metrics, "lineside_device_up", device="dock-in-1") == 0 and (
                    sample(metrics, "lineside_device_up", device="filler") == 0
                )

            await poll(scanner_down, "device_up 0 for the scanner and the PLC")
        line.pty.plug()
        status = await line.until(
            lambda s: (
                all(d["connected"] for d in s["devices"])
                and not any(a["kind"] == "device" for a in s["alarms"])
            ),
            "devices back",
        )
        metrics = await line.metrics()
        assert sample(metrics, "lineside_device_up", device="dock-in-1") == 1
        assert sample(metrics, "lineside_device_up", device="filler") == 1
        r = await line.http.get("/api/events", params={"type": "device.status", "limit": 20})
        changes = {(e["data"]["device"], e["data"]["connected"]) for e in r.json()}
        assert {("dock-in-1", False), ("filler", False), ("filler", True)} <= changes


def is_event(topic: str) -> bool:
    return topic.startswith(EVENTS) and not topic.endswith("/state")


# --- actions -----------------------------------------------------------------------------


def audit(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "data" / "audit.log"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


async def test_actions_need_login_csrf_and_origin_then_work(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    async with line_agent(tmp_path, broker, pty) as line:
        http, origin = line.http, line.origin
        order = {"work_order": "WO-77", "gtin": GTIN, "lot": "L7701", "planned_qty": 500}
        r = await http.post("/api/actions/work-order", json=order, headers=origin)
        assert r.status_code == 401, "no login"
        r = await http.post("/api/login", json={"password": "guess"}, headers=origin)
        assert r.status_code == 401
        r = await http.post("/api/login", json={"password": PASSWORD})
        assert r.status_code == 403, "login without Origin"
        r = await http.post("/api/login", json={"password": PASSWORD}, headers=origin)
        assert r.status_code == 429, "blocked for a moment after the wrong guess: no verdict"
        async with asyncio.timeout(10):  # the block ends by itself
            while r.status_code == 429:
                await asyncio.sleep(0.1)
                r = await http.post("/api/login", json={"password": PASSWORD}, headers=origin)
        assert r.status_code == 200
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        csrf = {"X-CSRF-Token": r.json()["csrf_token"], **origin}

        r = await http.post("/api/actions/work-order", json=order, headers=origin)
        assert r.status_code == 403, "no CSRF token"
        r = await http.post(
            "/api/actions/work-order",
            json=order,
            headers={**csrf, "Origin": "http://evil.example"},
        )
        assert r.status_code == 403, "foreign Origin"
        assert (await http.get("/api/actions/work-order")).status_code == 405, "no GET"
        assert line.agent.batch_lines.named(None).work_order.work_order is None

        r = await http.post("/api/actions/work-order", json=order, headers=csrf)
        assert r.status_code == 200, r.text
        status = await line.until(
            lambda s: (s["batch"] or {}).get("work_order") == "WO-77", "work order on the batch"
        )
        assert status["batch"]["lot"] == "L7701"
        assert status["batch"]["planned_qty"] == 500
        code = await line.complete_batch(quantity=500)
        assert "(10)L7701" in code

        bad = {**order, "gtin": "123"}
        r = await http.post("/api/actions/work-order", json=bad, headers=csrf)
        assert r.status_code == 400

        if not line.agent.alarms.active():  # the clock alarm is on where NTP is not synced
            line.agent.alarms.raise_("test", "test", "raised by the test")
        alarm = line.agent.alarms.active()[0]
        r = await http.post("/api/actions/alarm-ack", json={"alarm_id": alarm.id}, headers=csrf)
        assert r.status_code == 200, r.text
        status = await line.status()
        acked = next(a for a in status["alarms"] if a["id"] == alarm.id)
        assert acked["acknowledged"] is True
        r = await http.post("/api/actions/alarm-ack", json={"alarm_id": "nope"}, headers=csrf)
        assert r.status_code == 400

        async with subscriber(broker, EVENTS + "#") as got:
            r = await http.post(
                "/api/actions/resend", json={"destination": "plant-broker", "seq": 1}, headers=csrf
            )
            assert r.status_code == 200, r.text
            await got.wait_for(lambda g: 1 in {p["seq"] for p in g.payloads(is_event)})
        r = await http.post(
            "/api/actions/resend", json={"destination": "nowhere", "seq": 1}, headers=csrf
        )
        assert r.status_code == 400
        r = await http.get("/api/quarantine")
        assert (r.status_code, r.json()) == (200, [])

        r = await http.post("/api/logout", json={}, headers=csrf)
        assert r.status_code == 200
        r = await http.post("/api/actions/work-order", json={}, headers=csrf)
        assert r.status_code == 401, "logged out"

    entries = audit(tmp_path)
    results = [(e["action"], e["result"]) for e in entries]
    assert ("login", "failed") in results
    assert ("login", "refused: cross-origin request") in results
    assert ("login", "refused: too many failed logins") in results
    assert ("work-order", "refused: login required") in results
    assert ("work-order", "refused: missing or wrong CSRF token") in results
    assert ("work-order", "refused: cross-origin request refused") in results
    assert ("work-order", "ok") in results
    assert ("alarm-ack", "ok") in results
    assert ("resend", "ok") in results
    assert all({"time", "action", "args", "client", "result"} <= set(e) for e in entries)
    assert PASSWORD not in (tmp_path / "data" / "audit.log").read_text()


async def test_without_password_file_actions_are_off(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    async with line_agent(tmp_path, broker, pty, password=False) as line:
        r = await line.http.get("/api/session")
        assert r.json()["actions_enabled"] is False
        r = await line.http.post("/api/login", json={"password": "x"}, headers=line.origin)
        assert r.status_code == 403
        r = await line.http.post("/api/actions/work-order", json={}, headers=line.origin)
        assert r.status_code == 403
