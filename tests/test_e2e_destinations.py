"""Destinations end to end through the real agent: routing, HTTP, the per-destination log
lines, an MQTT 5 refusal.

Real parts only: pty scanners, the test's own mosquitto, a real HTTP receiver (uvicorn serving
a small Starlette app on a free loopback port, switchable between up, 503, 422 and slow; see
`destination_support`), real files in `tmp_path`, the agent in process. File drops are in
test_e2e_file_drops.py.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import httpx
from agent_harness import running_agent, write_config
from destination_support import (
    EVENTS,
    Arrivals,
    Receiver,
    destination,
    file_destination,
    http_destination,
    outbox_seqs,
    receiving,
)
from support import STAY_ROOT, Pty, subscriber, wait_until

from agent.runtime.destinations import DestinationLog
from sync.publisher import DestinationHealth

if TYPE_CHECKING:
    from pathlib import Path

    import pytest
    from support import Broker


# -- HTTP ----------------------------------------------------------------------------------------


async def test_http_down_for_1000_events_while_mqtt_flows_then_all_arrive_once_in_order(
    tmp_path: Path, broker: Broker, pty: Pty, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.runtime.destinations")

    def log_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "agent.runtime.destinations"]

    receiver = Receiver(mode="down")
    config = write_config(
        tmp_path,
        broker,
        {"dock-in-1": ("inbound", pty)},
        extra=http_destination(receiver),
        store='synchronous = "normal"',
    )
    async with (
        receiving(receiver),
        subscriber(broker, EVENTS + "#") as got,
        running_agent(config) as agent,
    ):
        arrivals = Arrivals(got)
        for i in range(1000):
            raw = f"HTTP-DOWN-{i:04d}"
            pty.write(f"{raw}\r\n".encode())
            # real time: each scan is at the MQTT subscriber before the next one is made
            await got.wait_for(lambda _g, raw=raw: raw in arrivals.update()[-3:], timeout=10)
        assert receiver.accepted == []
        assert receiver.refused > 0
        await wait_until(lambda: destination(agent, "erp").backlog >= 1000, what="backlog seen")
        erp, broker_dest = destination(agent, "erp"), destination(agent, "plant-broker")
        assert erp.connected is False
        assert erp.last_error is not None
        assert "HTTP 503" in erp.last_error
        assert erp.oldest_undelivered_age_s is not None
        assert erp.oldest_undelivered_age_s > 0
        assert broker_dest.connected is True
        assert broker_dest.delivered >= 1000
        assert broker_dest.backlog == 0
        assert agent.status_url is not None
        async with httpx.AsyncClient() as client:
            api = (await client.get(agent.status_url + "api/status")).json()
        by_name = {d["name"]: d for d in api["destinations"]}
        assert by_name["erp"]["backlog"] >= 1000
        assert "HTTP 503" in by_name["erp"]["last_error"]
        assert by_name["plant-broker"]["backlog"] == 0

        receiver.mode = "up"
        last = agent.outbox.last_seq
        await receiver.wait_for(lambda r: len(r.accepted) >= last, timeout=30)
        await wait_until(lambda: destination(agent, "erp").backlog == 0, what="erp caught up")
        erp = destination(agent, "erp")
        assert erp.connected is True
        assert erp.delivered >= last
        await wait_until(
            lambda: any(m.startswith("destination erp: up") for m in log_lines()),
            what="the monitor logs erp's figures",
        )

    assert outbox_seqs(receiver) == list(range(1, last + 1)), "exactly once, in order"
    # the figures in the log: a line when erp went down, and one when it came back
    down = next(i for i, m in enumerate(log_lines()) if m.startswith("destination erp: down"))
    assert "HTTP 503" in log_lines()[down]
    assert any(m.startswith("destination erp: up") for m in log_lines()[down:])
    assert len({e["id"] for e in receiver.accepted}) == last
    raws = [e["data"]["raw"] for e in receiver.accepted if e["type"] == "goods.received"]
    assert raws == [f"HTTP-DOWN-{i:04d}" for i in range(1000)]
    assert arrivals.update().count("HTTP-DOWN-0999") == 1


async def test_http_4xx_is_quarantined_visibly_and_released_after_the_fix(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    receiver = Receiver(mode="reject")
    config = write_config(
        tmp_path, broker, {"dock-in-1": ("inbound", pty)}, extra=http_destination(receiver)
    )
    async with (
        receiving(receiver),
        subscriber(broker, EVENTS + "#") as got,
        running_agent(config) as agent,
    ):
        view = agent.view
        arrivals = Arrivals(got)
        for raw in ("REJ-1", "REJ-2", "REJ-3"):
            pty.write(f"{raw}\r\n".encode())
        await got.wait_for(lambda _g: "REJ-3" in arrivals.update(), timeout=10)
        last = agent.outbox.last_seq
        await wait_until(lambda: destination(agent, "erp").quarantined == last, what="parked")
        assert [q.seq for q in await agent.outbox.quarantined("erp")] == list(range(1, last + 1))
        erp = destination(agent, "erp")
        assert erp.backlog == 0, "rejected events do not hold the cursor"
        assert erp.last_error is not None
        assert "HTTP 422" in erp.last_error
        entries = await view.quarantine()
        assert {q.destination for q in entries} == {"erp"}
        assert all(
            q.reason.startswith("HTTP 422: ") and "unknown site" in q.reason for q in entries
        )
        assert receiver.accepted == []
        # the broker destination is untouched by the other's rejections
        assert destination(agent, "plant-broker").quarantined == 0

        receiver.mode = "up"  # the receiver is fixed
        for entry in entries:
            await view.release("erp", entry.seq)
        await receiver.wait_for(lambda r: len(r.accepted) == last)
        await wait_until(lambda: destination(agent, "erp").quarantined == 0, what="settled")
        assert await agent.outbox.quarantined("erp") == []
        pty.write(b"AFTER-FIX\r\n")
        await receiver.wait_for(
            lambda r: any(e["data"].get("raw") == "AFTER-FIX" for e in r.accepted)
        )
    assert outbox_seqs(receiver)[:last] == list(range(1, last + 1))
    assert receiver.duplicates == []


async def test_routing_by_type_and_a_slow_destination_stalls_no_other(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    dock_out = Pty(tmp_path / "dock-out")
    dock_out.plug()
    receiver = Receiver(mode="slow")
    drop = tmp_path / "drop"
    config = write_config(
        tmp_path,
        broker,
        {"dock-in-1": ("inbound", pty), "dock-out-1": ("outbound", dock_out)},
        extra=http_destination(receiver, types='["goods.shipped"]')
        + file_destination(drop, fmt="jsonl", per_file=1, types='["goods.received"]'),
    )
    try:
        async with (
            receiving(receiver),
            subscriber(broker, EVENTS + "#") as got,
            running_agent(config) as agent,
        ):
            dock_out.write(b"SHIP-1\r\n")
            await wait_until(lambda: receiver.held > 0, what="the HTTP receiver holds a POST")
            for i in range(20):
                pty.write(f"RECV-{i:02d}\r\n".encode())
            # the file drop and the broker keep flowing while the HTTP POST hangs
            await wait_until(lambda: len(list(drop.glob("*.jsonl"))) == 20, what="20 files")
            arrivals = Arrivals(got)
            await got.wait_for(lambda _g: "RECV-19" in arrivals.update())
            assert receiver.accepted == []
            await wait_until(lambda: destination(agent, "erp").backlog == 1, what="measured")
            assert receiver.accepted == []
            receiver.release.set()
            await receiver.wait_for(lambda r: len(r.accepted) == 1)
            await wait_until(lambda: destination(agent, "erp").backlog == 0, what="caught up")
    finally:
        dock_out.unplug()
    assert [(e["type"], e["data"]["raw"]) for e in receiver.accepted] == [
        ("goods.shipped", "SHIP-1")
    ]
    dropped = [json.loads(p.read_text()) for p in sorted(drop.glob("*.jsonl"))]
    assert [(e["type"], e["data"]["raw"]) for e in dropped] == [
        ("goods.received", f"RECV-{i:02d}") for i in range(20)
    ]
    assert {"SHIP-1", *(f"RECV-{i:02d}" for i in range(20))} <= set(arrivals.update())


# -- per-destination numbers in the log ----------------------------------------------------------


def health(*, connected: bool = True, error: str | None = None) -> DestinationHealth:
    return DestinationHealth(
        name="erp",
        connected=connected,
        delivered=5,
        last_delivered_time=None,
        backlog=7,
        backlog_bytes=700,
        oldest_undelivered_age_s=3.0,
        quarantined=1,
        last_error=error,
        last_error_time=None,
        reconnects=0,
    )


def test_destination_log_line_on_change_and_once_a_period(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.runtime.destinations")
    now = [0.0]
    destination_log = DestinationLog(period_s=60, clock=lambda: now[0])
    steps = [
        (0, health()),
        (10, health()),  # unchanged, not due
        (11, health(connected=False, error="HTTP 503: busy")),  # change
        (20, health(connected=False, error="HTTP 503: busy")),
        (71, health(connected=False, error="HTTP 503: busy")),  # due again
    ]
    for at, h in steps:
        now[0] = at
        destination_log.sample([h])
    logged = [(r.levelname, r.getMessage()) for r in caplog.records]
    figures = "delivered 5, backlog 7 (700 bytes), oldest 3.0 s, quarantined 1, last error:"
    assert logged == [
        ("INFO", f"destination erp: up, {figures} -"),
        ("WARNING", f"destination erp: down, {figures} HTTP 503: busy"),
        ("WARNING", f"destination erp: down, {figures} HTTP 503: busy"),
    ]


# -- MQTT 5: a refused publish -------------------------------------------------------------------


async def test_mqtt5_publish_refused_by_the_broker_is_quarantined(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    acl = tmp_path / "acl"
    acl.write_text(
        "topic read #\n"
        + "".join(
            f"topic write {EVENTS}{t}\n" for t in ("state", "goods.received", "device.status")
        )
    )
    broker.stop()
    broker.extra_config = f"{STAY_ROOT}acl_file {acl}\n"
    broker.start()
    config = write_config(tmp_path, broker, {"dock-in-1": ("inbound", pty)})
    async with subscriber(broker, EVENTS + "#") as got, running_agent(config) as agent:
        arrivals = Arrivals(got)
        pty.write(b"]C10109501101530004\r\n")  # bad check digit: scan.rejected, not allowed
        pty.write(b"ALLOWED-1\r\n")
        await got.wait_for(lambda _g: "ALLOWED-1" in arrivals.update())
        await wait_until(lambda: destination(agent, "plant-broker").quarantined == 1, what="parked")
        [parked] = await agent.outbox.quarantined("plant-broker")
        status = destination(agent, "plant-broker")
    assert parked.route == "scan.rejected"
    assert "not authorized" in parked.reason.lower() or "0x87" in parked.reason
    assert status.connected is True
    assert arrivals.update() == ["ALLOWED-1"]
