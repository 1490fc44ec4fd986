"""Destinations end to end through the real agent: routing, HTTP, file drops, numbers.

Real parts only: pty scanners, the test's own mosquitto, a real HTTP receiver (uvicorn serving
a small Starlette app on a free loopback port, switchable between up, 503, 422 and slow), real
files in `tmp_path`, the agent in process or as a process that is SIGKILLed.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx
import uvicorn
from agent_harness import AgentProcess, running_agent, write_config
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support import Pty, free_port, subscriber, wait_until

from agent.destinations import DestinationLog
from agent.status_view import RuntimeView
from sync.base import Draft
from sync.files import CSV_COLUMNS, FORMULA_TRIGGERS, FileDestinationConfig, FileSink
from sync.outbox import Outbox
from sync.publisher import DestinationHealth, Publisher

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Generator
    from pathlib import Path

    import pytest
    from starlette.requests import Request
    from support import Broker, Collected

    from agent.runtime import Agent
    from agent.web.view import DestinationStatus

EVENTS = "lineside/v1/plant-a/line-3/"
# Started as root, mosquitto drops to the "mosquitto" user before it reads its ACL file.
STAY_ROOT = "user root\n" if os.geteuid() == 0 else ""
Mode = Literal["up", "down", "reject", "slow"]


# -- a real HTTP receiver ----------------------------------------------------------------------


class _QuietServer(uvicorn.Server):
    """uvicorn without its SIGINT/SIGTERM handlers (pytest owns the process's signals)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None]:
        yield


@dataclass
class Receiver:
    """What the HTTP receiver (a WMS/ERP stand-in) got, and how it answers now.

    `up` accepts (2xx) and de-duplicates batches by Idempotency-Key; `down` answers 503 with
    `Retry-After: 1`; `reject` answers 422; `slow` holds each request until `release` is set,
    then accepts it.
    """

    port: int = field(default_factory=free_port)
    mode: Mode = "up"
    held: int = 0  # requests held in `slow` mode so far
    release: asyncio.Event = field(default_factory=asyncio.Event)  # lets held requests go on
    accepted: list[dict[str, Any]] = field(default_factory=list)  # events, first delivery only
    keys: list[str] = field(default_factory=list)  # Idempotency-Key of each accepted batch
    duplicates: list[str] = field(default_factory=list)  # keys seen again
    refused: int = 0  # requests answered with an error
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    async def handle(self, request: Request) -> Response:
        key = request.headers.get("idempotency-key", "")
        body = await request.body()
        try:
            if self.mode == "down":
                self.refused += 1
                return JSONResponse({"error": "maintenance"}, 503, {"Retry-After": "1"})
            if self.mode == "reject":
                self.refused += 1
                return JSONResponse({"error": "unknown site plant-a"}, 422)
            if self.mode == "slow":
                self.held += 1
                self.changed.set()
                await self.release.wait()
            if request.headers.get("content-type") != "application/json" or not key:
                return JSONResponse({"error": "bad request"}, 400)
            if key in self.keys:
                self.duplicates.append(key)
            else:
                events = json.loads(body)
                first, last = key.split("..")
                assert (events[0]["id"], events[-1]["id"]) == (first, last)
                self.keys.append(key)
                self.accepted.extend(events)
            return JSONResponse({"ok": True}, 200)
        finally:
            self.changed.set()

    async def wait_for(self, predicate: Callable[[Receiver], bool], timeout: float = 20) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    """Serve `receiver` on its port while the block runs (stop it to make it "not listening")."""
    app = Starlette(routes=[Route("/events", receiver.handle, methods=["POST"])])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=receiver.port, lifespan="off", log_config=None
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(), name="test-http-receiver")
    try:
        await wait_until(lambda: server.started or task.done(), what="receiver listening")
        if task.done():
            await task
        yield receiver
    finally:
        receiver.release.set()  # held requests end, so that the server can shut down
        server.should_exit = True
        await task


# -- helpers -----------------------------------------------------------------------------------


def http_destination(receiver: Receiver, name: str = "erp", types: str = '["*"]') -> str:
    return (
        f'[[destinations]]\nname = "{name}"\nkind = "http"\nurl = "{receiver.url}"\n'
        f"types = {types}\ntimeout_s = 10\n"
    )


def file_destination(
    directory: Path, *, fmt: str = "csv", per_file: int = 5, types: str = '["*"]'
) -> str:
    return (
        f'[[destinations]]\nname = "qms-drop"\nkind = "file"\ndir = "{directory}"\n'
        f'format = "{fmt}"\nmax_events_per_file = {per_file}\ntypes = {types}\n'
        "max_file_age_s = 0.3\n"  # part-full files roll soon (the default waits 60 s)
    )


class Arrivals:
    """Scans seen at an MQTT subscriber, looked at incrementally (no re-parse per check)."""

    def __init__(self, got: Collected) -> None:
        self._got = got
        self._looked = 0
        self.raws: list[str] = []

    def update(self) -> list[str]:
        messages = self._got.messages
        for topic, payload, _ in messages[self._looked :]:
            if topic.startswith(EVENTS) and not topic.endswith("/state"):
                event = json.loads(payload)
                raw = event["data"].get("raw")
                if raw is not None:
                    self.raws.append(str(raw))
        self._looked = len(messages)
        return self.raws


def destination(agent: Agent, name: str) -> DestinationStatus:
    """The status view's entry for destination `name`."""
    return next(d for d in RuntimeView(agent).status().destinations if d.name == name)


def outbox_seqs(receiver: Receiver) -> list[int]:
    return [int(e["seq"]) for e in receiver.accepted]


# -- HTTP ----------------------------------------------------------------------------------------


async def test_http_down_for_1000_events_while_mqtt_flows_then_all_arrive_once_in_order(
    tmp_path: Path, broker: Broker, pty: Pty, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.destinations")

    def log_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "agent.destinations"]

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
        view = RuntimeView(agent)
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


# -- file drops ----------------------------------------------------------------------------------


INJECTIONS = ('=HYPERLINK("http://evil.example","open")', "+1+2", "-3-4", "@SUM(A1:A9)")


def complete_csv_rows(content: bytes) -> list[list[str]]:
    """The data rows of a complete CSV drop file; AssertionError if it is partial."""
    assert content.endswith(b"\r\n"), "file does not end with a complete row"
    rows = list(csv.reader(io.StringIO(content.decode("utf-8"), newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[1:], "a file without events"
    for row in rows[1:]:
        assert len(row) == len(CSV_COLUMNS), row
        json.loads(row[-1])
    return rows[1:]


def complete_jsonl_events(content: bytes) -> list[dict[str, Any]]:
    """The events of a complete JSON Lines drop file; AssertionError if it is partial."""
    assert content.endswith(b"\n"), "file does not end with a complete line"
    return [json.loads(line) for line in content.splitlines()]


async def test_file_drop_reader_never_sees_a_partial_file_and_formulas_are_neutralised(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    drop = tmp_path / "drop"
    config = write_config(
        tmp_path,
        broker,
        {"dock-in-1": ("inbound", pty)},
        extra=file_destination(drop, fmt="csv", per_file=3, types='["goods.received"]'),
    )
    seen: dict[str, bytes] = {}  # file name -> content when first seen
    stop = asyncio.Event()

    async def poll_folder() -> None:  # a legacy reader that polls the folder
        while not stop.is_set():
            if drop.exists():
                for path in drop.iterdir():
                    if path.name.startswith("."):
                        continue  # temporary names are not for readers
                    content = path.read_bytes()
                    complete_csv_rows(content)
                    assert seen.setdefault(path.name, content) == content, "file changed"
            await asyncio.sleep(0.001)

    scans = [f"FILE-{i:03d}" for i in range(150)]
    scans[20:20] = INJECTIONS
    async with running_agent(config):
        reader = asyncio.create_task(poll_folder(), name="test-folder-reader")
        try:
            for i, raw in enumerate(scans):
                pty.write(f"{raw}\r\n".encode())
                if i % 10 == 9:
                    await asyncio.sleep(0.005)
            await wait_until(
                lambda: (
                    sum(c.count(b"\r\n") - 1 for c in seen.values()) >= len(scans) or reader.done()
                ),
                what="every scan in a complete file seen by the reader",
            )
        finally:
            stop.set()
            await reader  # raises what the reader found wrong
    names = sorted(seen)
    assert len(names) >= len(scans) // 3
    rows = [row for name in names for row in complete_csv_rows(seen[name])]
    assert [json.loads(r[-1])["raw"] for r in rows] == scans, "in order, once each"
    assert [int(r[1]) for r in rows] == sorted(int(r[1]) for r in rows)
    for row in rows:
        for cell in row:
            assert not cell.startswith(FORMULA_TRIGGERS) or cell.startswith("'"), row
    injected = {json.loads(r[-1])["raw"]: r for r in rows if json.loads(r[-1])["raw"] in INJECTIONS}
    assert set(injected) == set(INJECTIONS)
    for raw, row in injected.items():
        assert row[2] == "goods.received"
        assert json.loads(row[-1])["raw"] == raw  # the value itself is kept, as text


async def test_file_drop_survives_sigkill_without_partial_files_or_loss(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    drop = tmp_path / "drop"
    config = write_config(
        tmp_path,
        broker,
        {"dock-in-1": ("inbound", pty)},
        extra=file_destination(drop, fmt="jsonl", per_file=2, types='["goods.received"]'),
    )
    proc = AgentProcess(config, tmp_path / "agent.log")
    acked = bytearray()
    proc.start()
    try:
        await wait_until(
            lambda: "scanner dock-in-1: connected" in proc.log(), timeout=30, what="agent up"
        )
        for i in range(300):
            pty.write(f"KILL-{i:05d}\r\n".encode())
            if i % 10 == 9:
                await asyncio.sleep(0.005)
                acked.extend(pty.read_available())
            if i == 200:
                await asyncio.sleep(0.01)
                proc.kill()
                break
        acked.extend(pty.read_available())
        good_reads = acked.count(b"\x06")
        assert good_reads > 0
        # right after the kill: every visible file is complete
        for path in drop.glob("[!.]*"):
            complete_jsonl_events(path.read_bytes())
        proc.start()
        await wait_until(
            lambda: proc.log().count("scanner dock-in-1: connected") >= 2,
            timeout=30,
            what="agent restarted",
        )
        pty.write(b"AFTER-RESTART\r\n")
        expected = {f"KILL-{i:05d}" for i in range(good_reads)} | {"AFTER-RESTART"}

        def dropped() -> list[str]:
            return [
                str(e["data"]["raw"])
                for path in sorted(drop.glob("[!.]*"))
                for e in complete_jsonl_events(path.read_bytes())
            ]

        await wait_until(lambda: expected <= set(dropped()), timeout=30, what="all acked dropped")
        assert list(drop.glob(".*")) == [], "leftover temporary files are cleaned up"
    finally:
        if proc.process is not None:
            assert proc.terminate() == 0
    raws = dropped()
    first_seen = list(dict.fromkeys(raws))
    assert first_seen == sorted(first_seen, key=lambda r: (r == "AFTER-RESTART", r)), "in order"
    assert set(first_seen) >= expected


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
    caplog.set_level(logging.INFO, logger="agent.destinations")
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


# -- a sink that refuses part of a batch ---------------------------------------------------------


async def test_file_sink_refusing_part_of_a_batch_parks_only_those(tmp_path: Path) -> None:
    """`SinkRejected.ids`: the file sink wrote the rest of the batch; only the named ids park."""
    drop = tmp_path / "drop"
    config = FileDestinationConfig(
        name="qms-drop", kind="file", dir=drop, format="csv", max_events_per_file=4
    )

    def draft(n: int) -> Draft:
        bad = n % 5 == 2  # a payload that is no JSON object cannot be a CSV row
        body = b'"not an object"' if bad else json.dumps({"id": f"ev-{n}", "seq": n}).encode()
        return Draft(id=f"ev-{n}", route="goods.received", render=lambda _seq: body)

    async with Outbox(tmp_path / "o.db", min_free_bytes=0, destinations=["qms-drop"]) as outbox:
        await outbox.append_many([draft(n) for n in range(20)])
        publisher = Publisher(
            outbox, "qms-drop", lambda: FileSink(config), routes=frozenset({"*"}), backoff_cap=0.05
        )
        task = asyncio.create_task(publisher.run(), name="sync:qms-drop")
        try:
            await wait_until(lambda: outbox.cursor("qms-drop") == 20, what="cursor at the end")
            await wait_until(lambda: publisher.health.quarantined == 4, what="four parked")
            parked = await outbox.quarantined("qms-drop")
            health = publisher.health
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert [q.id for q in parked] == ["ev-2", "ev-7", "ev-12", "ev-17"]
    assert all("not a JSON object" in q.reason for q in parked)
    rows = [
        row for path in sorted(drop.glob("*.csv")) for row in complete_csv_rows(path.read_bytes())
    ]
    written = [row[0] for row in rows]
    assert written == [f"ev-{n}" for n in range(20) if n % 5 != 2], "each good one once, in order"
    assert health.delivered == 16
    assert health.last_error is not None
    assert "not a JSON object" in health.last_error


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
