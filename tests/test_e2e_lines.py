"""Two lines on one node, end to end on real parts (CONTRACTS.md "Lines: one agent, several
lines").

Two pymodbus PLC simulators on their own ports, two pty line scanners each naming its line, a
real mosquitto, the agent with its status page. Materials land only in their own line's batch;
each line stamps its own batches with its own lots (its `[plcs.line]` over `[line]`), serials
stay per GTIN and shared by the two lines that make the same product; work orders go to one
line by MQTT and by the page; `/api/status` has `batches`, one entry per line; the page in
Chromium shows both lines.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiomqtt
import httpx
from agent_harness import running_agent, write_config
from playwright.async_api import expect
from support import BROWSER_MARKS, Pty, chromium_page, subscriber, wait_until

from drivers.simulators.modbus_plc import FillingLineSimulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from support import Broker, Collected

    from agent.runtime.agent import Agent

GTIN = "09501101530003"
NODE = "lineside/v1/plant-a/line-3"
PASSWORD = "twin-admin"
MATERIAL_A = "]d2010950110153001010SUGAR-7"
MATERIAL_B = "]d2010950110153002710CAP-9"


def plc(ident: str, port: int, own: str) -> str:
    """A line PLC of the simulator's register map, with its own `[plcs.line]` settings."""
    return f"""
[[plcs]]
id = "{ident}"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {port}
poll_ms = 20
[plcs.batch]
trigger = "coil:0"
quantity = "holding:100:uint32"
ack = "coil:1"
write_code_to = "holding:200:string:64"
[plcs.line]
{own}
"""


def feed(ident: str, pty: Pty, line: str) -> str:
    return f"""
[[scanners]]
id = "{ident}"
role = "line"
line = "{line}"
port = "{pty.link}"
good_read = "\\u0006"
nak = "\\u0015"
dedup_ms = 0
"""


@dataclass
class TwoLines:
    """The running agent, its two PLCs and two line scanners, and an HTTP client of its page."""

    agent: Agent
    plc_a: FillingLineSimulator
    plc_b: FillingLineSimulator
    feed_a: Pty
    feed_b: Pty
    http: httpx.AsyncClient
    url: str

    async def status(self) -> dict[str, Any]:
        r = await self.http.get("/api/status")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def login(self) -> dict[str, str]:
        """Log in as the page does; the headers of its actions."""
        origin = {"Origin": self.url.rstrip("/")}
        r = await self.http.post("/api/login", json={"password": PASSWORD}, headers=origin)
        assert r.status_code == 200, r.text
        return {**origin, "X-CSRF-Token": r.json()["csrf_token"]}


@contextlib.asynccontextmanager
async def two_lines(tmp_path: Path, broker: Broker) -> AsyncIterator[TwoLines]:
    """Filler A (its own product and lots) and filler B (its own lots, [line]'s product)."""
    feed_a, feed_b = Pty(tmp_path / "feed-a"), Pty(tmp_path / "feed-b")
    feed_a.plug()
    feed_b.plug()
    password = tmp_path / "admin.pw"
    password.write_text(PASSWORD + "\n")
    try:
        async with (
            FillingLineSimulator(port=0, auto=False, handshake=True) as plc_a,
            FillingLineSimulator(port=0, auto=False, handshake=True) as plc_b,
        ):
            extra = "\n".join(
                [
                    f'[line]\ngtin = "{GTIN}"\nlot_template = "{{node}}-{{batch:02d}}"',
                    plc(
                        "filler-a",
                        plc_a.port,
                        f'gtin = "{GTIN}"\nlot_template = "A{{date:%y%m%d}}{{batch:02d}}"',
                    ),
                    plc("filler-b", plc_b.port, 'lot_template = "B{date:%y%m%d}{batch:02d}"'),
                    feed("feed-a", feed_a, "filler-a"),
                    feed("feed-b", feed_b, "filler-b"),
                ]
            )
            config = write_config(tmp_path, broker, {}, extra=extra)
            config.write_text(
                config.read_text().replace(
                    'listen = "127.0.0.1:0"',
                    f'listen = "127.0.0.1:0"\nadmin_password_file = "{password}"',
                )
            )
            async with running_agent(config) as agent:
                await wait_until(lambda: agent.status_url is not None, what="status page up")
                await wait_until(
                    lambda: all(line.health.connected for line in agent.lines), what="PLCs up"
                )
                await wait_until(
                    lambda: agent.commands is not None and agent.commands.connected,
                    what="command listener connected",
                )
                assert agent.status_url is not None
                async with httpx.AsyncClient(
                    base_url=agent.status_url, timeout=10, trust_env=False
                ) as http:
                    yield TwoLines(agent, plc_a, plc_b, feed_a, feed_b, http, agent.status_url)
    finally:
        feed_a.unplug()
        feed_b.unplug()


async def command(broker: Broker, body: dict[str, Any]) -> dict[str, Any]:
    """Publish a work-order command as the MES does; the agent's reply."""
    topic = f"{NODE}/cmd/work-order"
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(f"{topic}/reply", qos=1)
        await client.publish(topic, json.dumps(body).encode(), qos=1)
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            reply: dict[str, Any] = json.loads(message.payload)
            return reply
    raise AssertionError("no reply")


def events(got: Collected, kind: str) -> list[dict[str, Any]]:
    return got.payloads(lambda t: t == f"{NODE}/{kind}")


async def test_two_lines_keep_their_materials_lots_batches_and_work_orders(
    tmp_path: Path, broker: Broker
) -> None:
    async with subscriber(broker, f"{NODE}/#") as got, two_lines(tmp_path, broker) as lines:
        agent = lines.agent
        a, b = agent.batch_lines.named("filler-a"), agent.batch_lines.named("filler-b")
        assert a.open is not None
        assert b.open is not None
        lot_a, lot_b = a.open.lot, b.open.lot
        assert lot_a.startswith("A")
        assert lot_b.startswith("B"), "each line's own lot_template"

        lines.feed_a.write(f"{MATERIAL_A}\r\n".encode())
        lines.feed_b.write(f"{MATERIAL_B}\r\n".encode())
        await got.wait_for(lambda g: len(events(g, "material.consumed")) == 2)
        consumed = {e["source"]: e["data"] for e in events(got, "material.consumed")}
        assert consumed["scanner:feed-a"]["raw"] == MATERIAL_A
        assert consumed["scanner:feed-a"]["batch"] == lot_a
        assert consumed["scanner:feed-b"]["raw"] == MATERIAL_B
        assert consumed["scanner:feed-b"]["batch"] == lot_b

        # work orders by MQTT: the line is required on a node with two, and must exist
        refused = await command(broker, {"work_order": "WO-B"})
        assert refused == {
            "ok": False,
            "error": "line: required: this node has 2 lines (filler-a, filler-b)",
        }
        refused = await command(broker, {"work_order": "WO-B", "line": "filler-z"})
        assert refused == {
            "ok": False,
            "error": "line: no line 'filler-z' on this node (lines: filler-a, filler-b)",
        }
        reply = await command(broker, {"work_order": "WO-B", "line": "filler-b", "planned_qty": 7})
        assert reply == {"ok": True, "work_order": "WO-B"}
        status = await lines.status()
        waiting = {entry["line"]: entry["next_work_order"] for entry in status["batches"]}
        assert waiting["filler-a"] is None
        assert waiting["filler-b"]["work_order"] == "WO-B", "B's batch has a material: next"

        # each PLC completes its batch: its own materials, lot and code; serials per GTIN
        await lines.plc_a.complete_batch(100)
        await wait_until(lambda: a.completed == 1, what="filler-a stamped")
        await wait_until(lambda: bool(lines.plc_a.last_code), what="code written to filler-a")
        await lines.plc_b.complete_batch(200)
        await wait_until(lambda: b.completed == 1, what="filler-b stamped")
        await wait_until(lambda: bool(lines.plc_b.last_code), what="code written to filler-b")
        await got.wait_for(lambda g: len(events(g, "batch.completed")) == 2)
        done = {e["source"]: e["data"] for e in events(got, "batch.completed")}
        done_a, done_b = done["plc:filler-a"], done["plc:filler-b"]
        assert (done_a["lot"], done_a["quantity"], done_a["serial"]) == (lot_a, 100, "000001")
        assert (done_b["lot"], done_b["quantity"], done_b["serial"]) == (lot_b, 200, "000002")
        assert done_a["gtin"] == done_b["gtin"] == GTIN
        assert [m["raw"] for m in done_a["materials"]] == [MATERIAL_A]
        assert [m["raw"] for m in done_b["materials"]] == [MATERIAL_B]
        assert lines.plc_a.last_code == done_a["trace_code"]
        assert lines.plc_b.last_code == done_b["trace_code"]
        # each line's next batch starts after its completion: its batch.started follows
        await got.wait_for(
            lambda g: all(
                sum(e["source"] == source for e in events(g, "batch.started")) >= 2
                for source in ("plc:filler-a", "plc:filler-b")
            )
        )
        started = {e["source"]: e["data"] for e in events(got, "batch.started")}  # the last
        assert started["plc:filler-b"]["work_order"] == "WO-B", "B's next batch runs WO-B"
        assert started["plc:filler-a"]["work_order"] is None

        # the page's work order: for filler-a only
        headers = await lines.login()
        r = await lines.http.post(
            "/api/actions/work-order",
            json={"work_order": "WO-A", "planned_qty": 3},
            headers=headers,
        )
        assert (r.status_code, r.json()["detail"]) == (
            400,
            "line: required: this node has 2 lines (filler-a, filler-b)",
        )
        r = await lines.http.post(
            "/api/actions/work-order",
            json={"work_order": "WO-A", "planned_qty": 3, "line": "filler-a"},
            headers=headers,
        )
        assert r.status_code == 200, r.text
        await got.wait_for(
            lambda g: any(e["data"]["work_order"] == "WO-A" for e in events(g, "batch.started"))
        )
        opened = [e for e in events(got, "batch.started") if e["data"]["work_order"] == "WO-A"]
        assert [e["source"] for e in opened] == ["plc:filler-a"]

        status = await lines.status()
        entries = {entry["line"]: entry for entry in status["batches"]}
        assert list(entries) == ["filler-a", "filler-b"]
        assert entries["filler-a"]["batch"]["work_order"] == "WO-A"
        assert entries["filler-a"]["batch"]["planned_qty"] == 3
        assert entries["filler-b"]["batch"]["work_order"] == "WO-B"
        assert entries["filler-b"]["batch"]["planned_qty"] == 7
        assert [c["trace_code"] for c in entries["filler-a"]["recent_batches"]] == [
            done_a["trace_code"]
        ]
        assert [c["trace_code"] for c in entries["filler-b"]["recent_batches"]] == [
            done_b["trace_code"]
        ]
        assert status["batch"] == entries["filler-a"]["batch"], "`batch`: the first line's"


@BROWSER_MARKS[0]
@BROWSER_MARKS[1]
async def test_the_page_shows_both_lines_and_sets_a_work_order_for_one(
    tmp_path: Path, broker: Broker
) -> None:
    async with two_lines(tmp_path, broker) as lines:
        lines.feed_b.write(f"{MATERIAL_B}\r\n".encode())
        b = lines.agent.batch_lines.named("filler-b")
        await wait_until(lambda: b.open is not None and len(b.open.materials) == 1, what="B fed")
        async with chromium_page(lines.url) as (page, watch):
            card_a = page.locator('#lines [data-line="filler-a"]')
            card_b = page.locator('#lines [data-line="filler-b"]')
            await expect(card_a).to_contain_text("filler-a · current batch")
            await expect(card_b).to_contain_text("filler-b · current batch")

            await page.locator("#login-form input[name=password]").fill(PASSWORD)
            await page.locator("#login-form button[type=submit]").click()
            await expect(page.locator("#actions")).to_be_visible()
            form = page.locator("#work-order-form")
            await expect(form.locator("#work-order-line")).to_be_visible()  # two lines: choose
            await form.locator("select[name=line]").select_option("filler-b")
            await form.locator("input[name=work_order]").fill("WO-PAGE")
            await form.locator("button[type=submit]").click()
            await expect(page.locator("#action-message")).to_contain_text("Done")
            # B's batch has a material: the order waits for its next batch, on B's card only
            await expect(card_b).to_contain_text("WO-PAGE")
            await expect(card_a).not_to_contain_text("WO-PAGE")

            await page.locator("button[data-lang=zh]").click()
            await expect(card_a).to_contain_text("filler-a · 当前批次")
            await expect(card_b).to_contain_text("下一工单")
            assert watch.page_errors == []
        assert b.work_order.work_order == "WO-PAGE"
        assert lines.agent.batch_lines.named("filler-a").work_order.work_order is None
