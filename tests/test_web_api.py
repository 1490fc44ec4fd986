"""The status HTTP API through the ASGI app, plus one real uvicorn serving it."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from pydantic import SecretStr
from web_fake import REFUSED, FakeView

from agent.alarms import Alarm
from agent.web import Metrics, QuarantinedEvent, StatusServer, StatusServerError, create_app
from agent.web.app import CONTENT_SECURITY_POLICY
from agent.web.audit import AuditLog
from agent.web.hosts import HostPolicy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from fastapi import FastAPI

BASE = "http://lineside.test"
ORIGIN = {"Origin": BASE}
PASSWORD = "correct horse battery staple"


def make_app(
    view: FakeView, tmp_path: Path, *, password: str | None = PASSWORD, **options: Any
) -> FastAPI:
    """The app as these tests use it: reached as lineside.test, no per-address login block."""
    settings: dict[str, Any] = {"login_block_s": 0.0, **options}
    return create_app(
        view,
        metrics=Metrics(),
        password=SecretStr(password) if password is not None else None,
        audit=AuditLog(tmp_path / "audit.jsonl"),
        version="0.1.0-test",
        hosts=HostPolicy(["lineside.test"]),
        **settings,
    )


@pytest.fixture
def view() -> FakeView:
    return FakeView.healthy()


@pytest.fixture
async def client(view: FakeView, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(view, tmp_path))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c


async def login(client: httpx.AsyncClient) -> str:
    r = await client.post("/api/login", json={"password": PASSWORD}, headers=ORIGIN)
    assert r.status_code == 200, r.text
    token = r.json()["csrf_token"]
    assert isinstance(token, str)
    return token


def audit_lines(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_healthz_ok_then_down_with_the_views_reasons(
    client: httpx.AsyncClient, view: FakeView
) -> None:
    r = await client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    view.set_destination("plant-broker", connected=False, backlog=1234)
    r = await client.get("/healthz")
    assert r.status_code == 503
    assert r.json() == {"status": "down", "reasons": ["fake view: destination plant-broker down"]}


async def test_status_json_shape(client: httpx.AsyncClient, view: FakeView) -> None:
    view.add_scan("]C1bad", reason="check digit")
    r = await client.get("/api/status")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {
        "agent",
        "health",
        "devices",
        "destinations",
        "batch",
        "recent_batches",
        "recent_scans",
        "alarms",
        "batches",
        "printers",
    }
    assert body["agent"]["site"] == "plant-a"
    assert body["agent"]["clock_synced"] is True
    assert body["health"] == {"ok": True, "reasons": []}
    assert body["devices"][0] == {
        "id": "dock-in-1",
        "kind": "scanner",
        "role": "inbound",
        "connected": True,
        "last_seen": body["devices"][0]["last_seen"],
        "errors": 0,
        "last_error": None,
        "disconnected_since": None,
        "values": {},
    }
    dest = body["destinations"][0]
    assert {"name", "connected", "backlog", "backlog_bytes", "oldest_undelivered_age_s"} <= set(
        dest
    )
    assert body["batch"]["work_order"] == "WO-7"
    assert body["recent_batches"][0]["trace_code"].startswith("(01)09501101530003")
    assert body["recent_scans"][0]["reason"] == "check digit"
    assert r.headers["cache-control"] == "no-store"


async def test_events_limit_and_type(client: httpx.AsyncClient, view: FakeView) -> None:
    for i in range(5):
        view.add_scan(f"code-{i}", reason="bad" if i % 2 else None)
    r = await client.get("/api/events", params={"limit": 2})
    assert [e["seq"] for e in r.json()] == [5, 4]
    r = await client.get("/api/events", params={"type": "scan.rejected"})
    assert [e["data"]["raw"] for e in r.json()] == ["code-3", "code-1"]
    assert len((await client.get("/api/events")).json()) == 5
    for bad in (0, 1001, "x"):
        assert (await client.get("/api/events", params={"limit": bad})).status_code == 422


async def test_trace_is_404_when_unknown_else_the_chain(
    client: httpx.AsyncClient, view: FakeView
) -> None:
    view.traces["L1"] = {"code": "L1", "chain": []}
    assert (await client.get("/api/trace/unknown")).status_code == 404
    assert (await client.get("/api/trace/L1")).json() == {"code": "L1", "chain": []}


async def test_metrics_text_names(view: FakeView, tmp_path: Path) -> None:
    metrics = Metrics()
    app = create_app(
        view,
        metrics=metrics,
        password=None,
        audit=AuditLog(tmp_path / "a.jsonl"),
        version="t",
        hosts=HostPolicy(["lineside.test"]),
    )
    metrics.event_committed("goods.received")
    metrics.scan_rejected("dock-in-1")
    metrics.publish_acknowledged("plant-broker", 0.004)
    metrics.outbox_committed(0.002)
    view.set_destination("erp", backlog=7, backlog_bytes=900, oldest_undelivered_age_s=12.5)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        r = await c.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in (
        'lineside_events_total{type="goods.received"} 1.0',
        'lineside_scans_rejected_total{device="dock-in-1"} 1.0',
        'lineside_backlog_events{destination="erp"} 7.0',
        'lineside_backlog_bytes{destination="erp"} 900.0',
        'lineside_oldest_undelivered_age_seconds{destination="erp"} 12.5',
        'lineside_device_up{device="filler"} 1.0',
        'lineside_destination_up{destination="plant-broker"} 1.0',
        'lineside_publish_latency_seconds_count{destination="plant-broker"} 1.0',
        "lineside_outbox_commit_seconds_count 1.0",
        "lineside_login_failures_total 0.0",
        "lineside_login_throttled_total 0.0",
    ):
        assert name in text, name


async def test_login_wrong_then_right(client: httpx.AsyncClient, tmp_path: Path) -> None:
    r = await client.post("/api/login", json={"password": "guess"}, headers=ORIGIN)
    assert (r.status_code, r.json()["detail"]) == (401, "wrong password")
    assert "set-cookie" not in r.headers
    assert "lineside_login_failures_total 1.0" in (await client.get("/metrics")).text
    assert not (await client.get("/api/session")).json()["logged_in"]

    r = await client.post("/api/login", json={"password": PASSWORD}, headers=ORIGIN)
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here
    session = (await client.get("/api/session")).json()
    assert session == {
        "logged_in": True,
        "csrf_token": r.json()["csrf_token"],
        "actions_enabled": True,
        "version": "0.1.0-test",
    }
    assert [(e["action"], e["result"]) for e in audit_lines(tmp_path)] == [
        ("login", "failed"),
        ("login", "ok"),
    ]
    assert PASSWORD not in (tmp_path / "audit.jsonl").read_text()


async def test_login_cookie_is_secure_over_https(view: FakeView, tmp_path: Path) -> None:
    transport = httpx.ASGITransport(app=make_app(view, tmp_path))
    async with httpx.AsyncClient(transport=transport, base_url="https://lineside.test") as c:
        r = await c.post(
            "/api/login", json={"password": PASSWORD}, headers={"Origin": "https://lineside.test"}
        )
    assert r.status_code == 200
    assert "Secure" in r.headers["set-cookie"]


async def test_login_from_another_origin_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/login", json={"password": PASSWORD}, headers={"Origin": "http://evil.test"}
    )
    assert r.status_code == 403
    assert "set-cookie" not in r.headers


async def test_action_guards(client: httpx.AsyncClient, view: FakeView, tmp_path: Path) -> None:
    body = {"work_order": "WO-9", "gtin": "09501101530003", "lot": "L9", "planned_qty": 10}
    path = "/api/actions/work-order"
    r = await client.post(path, json=body, headers=ORIGIN)
    assert (r.status_code, r.json()["detail"]) == (401, "login required")
    csrf = await login(client)
    r = await client.post(path, json=body, headers=ORIGIN)
    assert r.status_code == 403, "no CSRF token"
    r = await client.post(path, json=body, headers={**ORIGIN, "X-CSRF-Token": "forged"})
    assert r.status_code == 403, "wrong CSRF token"
    r = await client.post(
        path, json=body, headers={"Origin": "http://evil.test", "X-CSRF-Token": csrf}
    )
    assert r.status_code == 403, "wrong Origin"
    r = await client.post(path, json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 403, "neither Origin nor Referer"
    assert (await client.get(path)).status_code == 405
    assert view.batch is not None
    assert view.batch.work_order == "WO-7", "nothing changed by refused requests"

    r = await client.post(path, json=body, headers={"Referer": f"{BASE}/", "X-CSRF-Token": csrf})
    assert r.status_code == 200, r.text
    assert view.batch.work_order == "WO-9"
    results = [(e["action"], e["result"]) for e in audit_lines(tmp_path)]
    assert results[0] == ("work-order", "refused: login required")
    assert results[-1] == ("work-order", "ok")
    assert audit_lines(tmp_path)[-1]["args"] == {**body, "line": None}
    assert audit_lines(tmp_path)[-1]["client"] == "127.0.0.1"


async def test_actions_do_their_work_and_report_bad_input(
    client: httpx.AsyncClient, view: FakeView, tmp_path: Path
) -> None:
    now = view.started
    view.alarms = [Alarm("backlog", "backlog", "backlog limit reached", now)]
    view.quarantined = [
        QuarantinedEvent("erp", 5, "id-5", "batch.completed", "HTTP 422", now),
        QuarantinedEvent("erp", 6, "id-6", "batch.completed", "HTTP 422", now),
    ]
    h = {**ORIGIN, "X-CSRF-Token": await login(client)}

    async def post(path: str, body: dict[str, Any]) -> httpx.Response:
        return await client.post(f"/api/actions/{path}", json=body, headers=h)

    r = await post("work-order", {"work_order": "WO-1", "gtin": "123"})
    assert (r.status_code, r.json()["detail"]) == (400, f"{REFUSED} GTIN '123'")  # passed on
    r = await post("work-order", {"work_order": "WO-1", "bogus": 1})
    assert r.status_code == 400
    assert "bogus" in r.json()["detail"]
    assert (
        await client.post("/api/actions/work-order", content=b"{", headers=h)
    ).status_code == 400
    assert (await post("work-order", {})).status_code == 200
    assert view.batch is None

    assert (await post("alarm-ack", {"alarm_id": "nope"})).status_code == 400
    assert (await post("alarm-ack", {"alarm_id": "backlog"})).status_code == 200
    assert view.alarms[0].acknowledged

    assert (await post("resend", {"destination": "erp", "seq": 0})).status_code == 400
    assert (await post("resend", {"destination": "erp", "seq": 40})).status_code == 200
    assert view.resends == [("erp", 40)]

    parked = (await client.get("/api/quarantine")).json()
    assert [(q["destination"], q["seq"], q["reason"]) for q in parked] == [
        ("erp", 5, "HTTP 422"),
        ("erp", 6, "HTTP 422"),
    ]
    assert (await post("quarantine/release", {"destination": "erp", "seq": 5})).status_code == 200
    assert (await post("quarantine/drop", {"destination": "erp", "seq": 6})).status_code == 200
    assert (await post("quarantine/drop", {"destination": "erp", "seq": 6})).status_code == 400
    assert view.quarantined == []

    actions = [(e["action"], e["result"]) for e in audit_lines(tmp_path)]
    assert ("quarantine-release", "ok") in actions
    assert ("quarantine-drop", f"refused: {REFUSED} quarantined 'erp' #6") in actions
    assert ("alarm-ack", "ok") in actions
    assert ("resend", "ok") in actions


async def test_a_label_is_reprinted_or_voided_by_an_admin_only_and_audited(
    client: httpx.AsyncClient, view: FakeView, tmp_path: Path
) -> None:
    body = {"printer": "labeller-1", "job": 1, "action": "reprint"}
    assert (await client.post("/api/actions/label", json=body, headers=ORIGIN)).status_code == 401
    csrf = await login(client)
    r = await client.post("/api/actions/label", json=body, headers=ORIGIN)
    assert r.status_code == 403  # no CSRF token
    h = {**ORIGIN, "X-CSRF-Token": csrf}
    r = await client.post("/api/actions/label", json={**body, "action": "burn"}, headers=h)
    assert r.status_code == 400
    r = await client.post("/api/actions/label", json={**body, "job": 7}, headers=h)
    assert r.status_code == 400
    assert (await client.post("/api/actions/label", json=body, headers=h)).status_code == 200
    assert view.label_decisions == [("labeller-1", 1, "reprint")]
    actions = [(e["action"], e["result"]) for e in audit_lines(tmp_path)]
    assert ("label-decision", "ok") in actions
    assert ("label-decision", "refused: login required") in actions
    assert ("label-decision", "refused: missing or wrong CSRF token") in actions


async def test_logout_ends_the_session(client: httpx.AsyncClient) -> None:
    csrf = await login(client)
    r = await client.post("/api/logout", headers={**ORIGIN, "X-CSRF-Token": csrf})
    assert r.status_code == 200
    r = await client.post(
        "/api/actions/resend",
        json={"destination": "erp", "seq": 1},
        headers={**ORIGIN, "X-CSRF-Token": csrf},
    )
    assert r.status_code == 401


async def test_actions_disabled_without_password(view: FakeView, tmp_path: Path) -> None:
    app = make_app(view, tmp_path, password=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        r = await c.post("/api/login", json={"password": "x"}, headers=ORIGIN)
        assert (r.status_code, r.json()["detail"]) == (403, "actions disabled")
        r = await c.post(
            "/api/actions/resend", json={"destination": "erp", "seq": 1}, headers=ORIGIN
        )
        assert (r.status_code, r.json()["detail"]) == (403, "actions disabled")
        assert (await c.get("/api/session")).json()["actions_enabled"] is False
    assert view.resends == []


async def test_security_headers_everywhere(client: httpx.AsyncClient) -> None:
    for path in ("/", "/static/app.js", "/api/status", "/healthz", "/metrics", "/nope"):
        r = await client.get(path)
        assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["referrer-policy"] == "no-referrer", path
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY


async def test_page_has_no_inline_script_or_style(client: httpx.AsyncClient) -> None:
    html = (await client.get("/")).text
    assert "<style" not in html
    assert " style=" not in html
    for chunk in html.split("<script")[1:]:
        tag, _, rest = chunk.partition(">")
        assert "src=" in tag
        assert rest.startswith("</script>")
    assert not any(f" on{event}=" in html.lower() for event in ("click", "load", "error", "submit"))
    for asset in ("/static/app.js", "/static/i18n.js", "/static/app.css"):
        assert (await client.get(asset)).status_code == 200, asset


async def read_event(lines: AsyncIterator[str]) -> dict[str, Any]:
    """Read server-sent events until the next `status` one and return its data."""
    event = None
    async for line in lines:
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event == "status":
            data: dict[str, Any] = json.loads(line.removeprefix("data: "))
            return data
    raise AssertionError("stream ended")


async def test_real_uvicorn_serves_and_streams(view: FakeView, tmp_path: Path) -> None:
    app = make_app(view, tmp_path)
    server = StatusServer(app, host="127.0.0.1", port=0)
    await server.__aenter__()
    port = server.port
    running = True
    serving = asyncio.create_task(server.serve_forever(), name="status")
    feed = asyncio.create_task(app.state.feed.run(), name="status-feed")
    try:
        async with httpx.AsyncClient(base_url=server.url.rstrip("/"), timeout=10) as c:
            assert (await c.get("/healthz")).json() == {"status": "ok"}
            assert (await c.get("/api/status")).json()["agent"]["node"] == "line-3"
            assert (await c.get("/")).headers["content-security-policy"]
            async with c.stream("GET", "/api/stream") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                lines = stream.aiter_lines()
                first = await read_event(lines)
                assert first["recent_scans"] == []
                view.add_scan("0950110153000310LIVE")
                second = await read_event(lines)
                assert second["recent_scans"][0]["raw"] == "0950110153000310LIVE"
                # Shut down with the stream still open: the stream must end, not hang.
                server.stop()
                await serving
                running = False
                await server.__aexit__(None, None, None)
                assert [line async for line in lines if line.startswith("data:")] == []
    finally:
        serving.cancel()
        feed.cancel()
        await asyncio.gather(serving, feed, return_exceptions=True)
        if running:
            await server.__aexit__(None, None, None)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "socket left open"


async def test_server_cancelled_closes_socket_and_busy_port_is_an_error(
    view: FakeView, tmp_path: Path
) -> None:
    app = make_app(view, tmp_path)
    async with StatusServer(app, host="127.0.0.1", port=0) as server:
        port = server.port
        with pytest.raises(StatusServerError):
            async with StatusServer(make_app(view, tmp_path), host="127.0.0.1", port=port):
                pass
        serving = asyncio.create_task(server.serve_forever(), name="status")
        await asyncio.sleep(0)
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


async def test_sessions_expire(view: FakeView, tmp_path: Path) -> None:
    app = make_app(view, tmp_path, session_ttl_s=0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        csrf = await login(c)
        r = await c.post(
            "/api/actions/resend",
            json={"destination": "erp", "seq": 1},
            headers={**ORIGIN, "X-CSRF-Token": csrf},
        )
        assert r.status_code == 401
    assert view.resends == []
