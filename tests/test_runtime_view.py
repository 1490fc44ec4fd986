"""The REAL status view (`RuntimeView` over a real agent's parts) through the HTTP API.

What a technician reads when an action is refused is the real view's words, so they are
tested here, on an agent built from a config file with its real outbox (SQLite), lines and
publishers — not on the fake of test_web_api.py, whose words are its own. The agent is not
running: nothing here needs a device or a broker, only the parts the page acts on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr

from agent.config import load_config
from agent.runtime.agent import Agent
from agent.web import create_app
from agent.web.hosts import HostPolicy

if TYPE_CHECKING:
    from pathlib import Path

BASE = "http://lineside.test"
ORIGIN = {"Origin": BASE}
PASSWORD = "line-admin"
GTIN = "09501101530003"
OTHER_GTIN = "09501101530010"

CONFIG = """
[agent]
site = "plant-a"
node = "twin-filler"
data_dir = "{data}"

[line]
gtin = "{gtin}"

[[plcs]]
id = "filler-a"
protocol = "modbus-tcp"
host = "127.0.0.1"
[plcs.batch]
trigger = "coil:0"
[plcs.line]
gtin = "{other}"

[[plcs]]
id = "filler-b"
protocol = "modbus-tcp"
host = "127.0.0.1"
[plcs.batch]
trigger = "coil:0"

[[plcs]]
id = "checkweigher"  # no [plcs.batch]: no line, only watched
protocol = "modbus-tcp"
host = "127.0.0.1"
[plcs.params]
weight_g = "holding:10"

[[scanners]]
id = "feed-a"
role = "line"
line = "filler-a"
port = "/dev/null"

[[destinations]]
name = "plant-drop"
kind = "file"
dir = "{drop}"
"""


async def test_the_real_views_refusals_and_work_orders_per_line(tmp_path: Path) -> None:
    config = tmp_path / "lineside.toml"
    config.write_text(
        CONFIG.format(data=tmp_path / "data", drop=tmp_path / "drop", gtin=GTIN, other=OTHER_GTIN)
    )
    agent = Agent(load_config(config))
    app = create_app(
        agent.view,
        metrics=agent.metrics,
        password=SecretStr(PASSWORD),
        audit=agent.audit,
        version="test",
        hosts=HostPolicy(["lineside.test"]),
        login_block_s=0.0,
    )
    (tmp_path / "data").mkdir()
    async with (
        agent.outbox,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client,
    ):
        for tracker in agent.batch_lines:
            await tracker.restore()
        r = await client.post("/api/login", json={"password": PASSWORD}, headers=ORIGIN)
        headers = {**ORIGIN, "X-CSRF-Token": r.json()["csrf_token"]}

        async def refusal(action: str, body: dict[str, Any]) -> str:
            r = await client.post(f"/api/actions/{action}", json=body, headers=headers)
            assert r.status_code == 400, r.text
            detail: str = r.json()["detail"]
            return detail

        order = {"work_order": "WO-1", "planned_qty": 10}
        assert await refusal("work-order", order) == (
            "line: required: this node has 2 lines (filler-a, filler-b)"
        )
        assert await refusal("work-order", {**order, "line": "filler-c"}) == (
            "line: no line 'filler-c' on this node (lines: filler-a, filler-b)"
        )
        assert await refusal("work-order", {**order, "line": "filler-b", "gtin": "123"}) == (
            "gtin: String should match pattern '^\\d{14}$'"
        )
        assert await refusal("work-order", {**order, "line": "a b"}) == (
            "line: String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'"
        )
        assert await refusal("alarm-ack", {"alarm_id": "nope"}) == "no active alarm 'nope'"
        assert await refusal("resend", {"destination": "nowhere", "seq": 1}) == (
            "no destination named 'nowhere'"
        )
        last = agent.outbox.last_seq
        assert await refusal("resend", {"destination": "plant-drop", "seq": last + 1}) == (
            f"seq must be within 1..{last}"
        )
        for action in ("quarantine/release", "quarantine/drop"):
            assert await refusal(action, {"destination": "plant-drop", "seq": 1}) == (
                "plant-drop has no quarantined event 1"
            )
        assert (await client.get("/api/trace/NO-SUCH-LOT")).status_code == 404

        r = await client.post(
            "/api/actions/work-order", json={**order, "line": "filler-b"}, headers=headers
        )
        assert r.status_code == 200, r.text
        line_a, line_b = agent.batch_lines
        assert line_b.work_order.work_order == "WO-1"
        assert line_b.work_order.gtin == GTIN, "[line]'s product: filler-b has none of its own"
        assert line_a.work_order.work_order is None, "the other line is left alone"
        r = await client.post(
            "/api/actions/work-order", json={**order, "line": "filler-a"}, headers=headers
        )
        assert r.status_code == 200, r.text
        assert line_a.work_order.gtin == OTHER_GTIN, "filler-a's own [plcs.line] product"

        status = (await client.get("/api/status")).json()
        assert [b["line"] for b in status["batches"]] == ["filler-a", "filler-b"]
        assert [b["batch"]["work_order"] for b in status["batches"]] == ["WO-1", "WO-1"]
        assert [b["batch"]["gtin"] for b in status["batches"]] == [OTHER_GTIN, GTIN]
        assert status["batch"] == status["batches"][0]["batch"], "`batch`: the first line's"
        roles = {d["id"]: d["role"] for d in status["devices"]}
        assert roles == {"feed-a": "line", "filler-a": "edge", "filler-b": "edge"} | {
            "checkweigher": "watch"
        }
