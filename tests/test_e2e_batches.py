"""PLC batches end to end (issue 3): the filling-line simulator, the agent, a real mosquitto.

Counts, not hopes: every batch the simulated PLC completes must arrive at an independent
subscriber as exactly one `batch.completed` with a valid GS1 trace code — across re-sent
triggers, a SIGKILL between commit and acknowledge, PLC faults, PLC restarts, and in every
trigger mode (handshake, counter, edge), over Modbus TCP and RTU.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import tty
from typing import TYPE_CHECKING, Any

import aiomqtt
import pytest
from agent_harness import AgentProcess, running_agent, write_config
from biip.gs1_messages import GS1Message
from support import Pty, subscriber, wait_until

from drivers.plcs.registers import RegisterAddress
from drivers.simulators.modbus_plc import ACK, TRIGGER, FillingLineSimulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from support import Broker, Collected

    from agent.batches.tracker import BatchTracker

GTIN = "09501101530003"
NODE = "lineside/v1/plant-a/line-3"
RECIPE = RegisterAddress.parse("holding:120:uint16")


def plc_section(
    where: str, *, trigger: str = "coil:0", handshake: bool = True, poll_ms: int = 10
) -> str:
    """The `[line]` and `[[plcs]]` config of the simulator's register map."""
    signals = [f'trigger = "{trigger}"', 'quantity = "holding:100:uint32"']
    if handshake:
        signals += ['ack = "coil:1"', 'write_code_to = "holding:200:string:64"']
    return "\n".join(
        [
            "[line]",
            f'gtin = "{GTIN}"',
            "[[plcs]]",
            'id = "filler"',
            where,
            f"poll_ms = {poll_ms}",
            "timeout_ms = 300",
            "[plcs.batch]",
            *signals,
            "[plcs.params]",
            'fill_temp_c = "holding:110:float32"',
            'recipe = "holding:120:uint16"',
            'batch_no = "holding:10:uint16"',
            "",
        ]
    )


def tcp(sim: FillingLineSimulator) -> str:
    return f'protocol = "modbus-tcp"\nhost = "{sim.host}"\nport = {sim.port}'


def completed(got: Collected) -> list[dict[str, Any]]:
    """Distinct batch.completed envelopes in seq order (at-least-once: dedupe by id)."""
    unique = {e["id"]: e for e in got.payloads(lambda t: t == f"{NODE}/batch.completed")}
    return sorted(unique.values(), key=lambda e: int(e["seq"]))


def started(got: Collected) -> list[dict[str, Any]]:
    unique = {e["id"]: e for e in got.payloads(lambda t: t == f"{NODE}/batch.started")}
    return sorted(unique.values(), key=lambda e: int(e["seq"]))


def outbox_count(data_dir: Path, route: str) -> int:
    """Rows of `route` in the agent's outbox file (read after the agent stopped)."""
    with contextlib.closing(sqlite3.connect(data_dir / "outbox.db")) as db:
        return int(
            db.execute("SELECT count(*) FROM events WHERE route = ?", (route,)).fetchone()[0]
        )


def check_trace_code(data: dict[str, Any]) -> None:
    """A valid GS1 element string (check digit included) that parses back to its fields."""
    message = GS1Message.parse_hri(data["trace_code"])
    assert all(es.gtin_error is None for es in message.element_strings)
    fields = {es.ai.ai: es.value for es in message.element_strings}
    assert fields["01"] == data["gtin"] == GTIN
    assert fields["10"] == data["lot"]
    assert fields["21"] == data["serial"]
    assert len(fields["11"]) == 6
    assert data["digital_link"] == message.as_gs1_digital_link_uri().value


async def finish_handshake(sim: FillingLineSimulator, tracker: BatchTracker, count: int) -> None:
    """Wait until `count` batches are stamped and the PLC's handshake is over."""
    await wait_until(
        lambda: tracker.completed >= count and not sim.value(TRIGGER) and not sim.value(ACK),
        what=f"handshake of batch {count} finished",
    )


def check_restarted_batches(
    got: Collected, data_dir: Path, point: str, code_before_restart: str, proc: AgentProcess
) -> list[dict[str, Any]]:
    """After a kill at `point` mid-handshake and a restart: two batches, each once, in order.

    The PLC held the first batch's code before the restart only if the kill came after it was
    written (`batch.before_ack`); the restarted agent says it acknowledges again.
    """
    events = completed(got)
    assert [e["data"]["serial"] for e in events] == ["000001", "000002"]
    assert [e["data"]["quantity"] for e in events] == [11, 12]
    assert outbox_count(data_dir, "batch.completed") == 2
    if point == "batch.before_ack":
        assert code_before_restart == events[0]["data"]["trace_code"]
    else:
        assert code_before_restart == ""
    assert "acknowledging again" in proc.log()
    return events


async def complete(sim: FillingLineSimulator, quantity: int) -> None:
    """Complete a batch as soon as the PLC program has left its previous one."""
    async with asyncio.timeout(20):
        while True:
            try:
                await sim.complete_batch(quantity)
            except RuntimeError:  # the program has not yet stepped out of the last handshake
                await asyncio.sleep(0.01)
            else:
                return


@pytest.fixture
async def sim() -> AsyncIterator[FillingLineSimulator]:
    async with FillingLineSimulator(port=0, auto=False, seed=3) as s:
        yield s


# --- 100 batches ------------------------------------------------------------------------


async def test_100_batches_arrive_once_each_with_valid_codes(
    tmp_path: Path, broker: Broker, sim: FillingLineSimulator
) -> None:
    config = write_config(
        tmp_path, broker, {}, extra=plc_section(tcp(sim)), store='synchronous = "normal"'
    )
    async with subscriber(broker, f"{NODE}/#") as got, running_agent(config) as agent:
        tracker = agent.batch_lines.named(None)
        for n in range(1, 101):
            await sim.set_value(RECIPE, n * 7)
            await complete(sim, quantity=1000 + n)
            await finish_handshake(sim, tracker, n)
        await got.wait_for(lambda g: len(completed(g)) >= 100)
        last_written = sim.last_code
    events = completed(got)
    assert len(events) == 100
    assert outbox_count(tmp_path / "data", "batch.completed") == 100
    data = [e["data"] for e in events]
    assert len({d["serial"] for d in data}) == 100
    assert len({d["trace_code"] for d in data}) == 100
    assert [d["serial"] for d in data] == [f"{n:06d}" for n in range(1, 101)]
    assert [d["quantity"] for d in data] == [1000 + n for n in range(1, 101)]
    assert [d["params"]["recipe"] for d in data] == [n * 7 for n in range(1, 101)]
    assert [d["params"]["batch_no"] for d in data] == list(range(1, 101))
    assert all(3.5 < d["params"]["fill_temp_c"] < 4.5 for d in data)
    for d in data:
        check_trace_code(d)
        assert d["work_order"] is None
        assert d["materials"] == []
    assert last_written == data[-1]["trace_code"]
    # each batch.completed is followed by the next batch.started with the next lot
    lots = [s["data"]["lot"] for s in started(got)]
    assert lots[:101] == [*(d["lot"] for d in data), lots[100]]


# --- exactly once across a SIGKILL --------------------------------------------------------


@pytest.mark.parametrize("point", ["batch.after_commit", "batch.before_ack"])
async def test_sigkill_between_commit_and_ack_stamps_once(
    tmp_path: Path,
    broker: Broker,
    sim: FillingLineSimulator,
    monkeypatch: pytest.MonkeyPatch,
    point: str,
) -> None:
    config = write_config(tmp_path, broker, {}, extra=plc_section(tcp(sim), poll_ms=20))
    proc = AgentProcess(config, tmp_path / "agent.log")
    async with subscriber(broker, f"{NODE}/#") as got:
        monkeypatch.setenv("LINESIDE_FAULT", point)
        proc.start()
        monkeypatch.delenv("LINESIDE_FAULT")
        try:
            assert proc.process is not None
            await wait_until(lambda: sim.requests[1] > 0, timeout=30, what="agent polls the PLC")
            await sim.complete_batch(quantity=11)
            await wait_until(lambda: proc.process is not None and proc.process.poll() is not None)
            assert proc.process.returncode == -9
            proc.process = None
            assert outbox_count(tmp_path / "data", "batch.completed") == 1
            assert sim.value(TRIGGER) is True
            assert sim.value(ACK) is False  # the PLC was never told
            code_before_restart = sim.last_code
            proc.start()
            await wait_until(
                lambda: not sim.value(TRIGGER) and not sim.value(ACK) and sim.last_code != "",
                timeout=30,
                what="the restarted agent ends the handshake",
            )
            await got.wait_for(lambda g: len(completed(g)) == 1)
            await complete(sim, quantity=12)  # the line goes on
            await got.wait_for(lambda g: len(completed(g)) == 2)
        finally:
            if proc.process is not None:
                assert proc.terminate() == 0
    events = check_restarted_batches(got, tmp_path / "data", point, code_before_restart, proc)
    assert sim.last_code == events[1]["data"]["trace_code"]


# --- PLC faults, outage and restart -------------------------------------------------------


async def test_plc_faults_show_in_health_and_the_line_recovers(
    tmp_path: Path, broker: Broker, sim: FillingLineSimulator
) -> None:
    config = write_config(tmp_path, broker, {}, extra=plc_section(tcp(sim), poll_ms=20))
    async with subscriber(broker, f"{NODE}/#") as got, running_agent(config) as agent:
        health, tracker = agent.lines[0].health, agent.batch_lines.named(None)
        await wait_until(lambda: health.connected, what="PLC connected")
        batches = 0

        async def one_batch() -> None:
            nonlocal batches
            batches += 1
            await complete(sim, quantity=batches)
            await finish_handshake(sim, tracker, batches)

        await one_batch()
        faults: list[tuple[str, str]] = [("exception_code", "exception code 4"), ("drop", "")]
        for fault, error in faults:
            setattr(sim.faults, fault, 4 if fault == "exception_code" else True)
            await wait_until(lambda: not health.connected, what=f"{fault} noticed")
            await wait_until(
                lambda error=error: error in (health.last_error or ""),  # type: ignore[misc]
                what="the error named",
            )
            sim.faults.clear()
            await wait_until(lambda: health.connected, timeout=30, what=f"back after {fault}")
            await one_batch()
        async with sim.stopped():
            await wait_until(lambda: not health.connected, what="outage noticed")
            await complete(sim, quantity=batches + 1)  # completed while nobody can see it
            batches += 1
        await finish_handshake(sim, tracker, batches)  # served once the PLC is back
        reconnects = health.reconnects
        await sim.restart(zero=True)  # a reboot with its memory cleared
        await wait_until(lambda: health.reconnects > reconnects, timeout=30, what="reconnect")
        await one_batch()
        await got.wait_for(lambda g: len(completed(g)) == batches)
        assert all(r.running for r in agent.state.tasks.values()), "no task crashed"
        await got.wait_for(
            lambda g: any(
                e["type"] == "device.status"
                and e["data"]["device"] == "filler"
                and e["data"]["connected"] is False
                for e in g.payloads(lambda t: t == f"{NODE}/device.status")
            )
        )
    events = completed(got)
    assert [e["data"]["quantity"] for e in events] == list(range(1, batches + 1))
    assert [e["data"]["serial"] for e in events] == [f"{n:06d}" for n in range(1, batches + 1)]
    assert outbox_count(tmp_path / "data", "batch.completed") == batches


# --- counter and edge triggers ------------------------------------------------------------


async def test_counter_trigger_counts_each_step_once(tmp_path: Path, broker: Broker) -> None:
    async with FillingLineSimulator(port=0, auto=False, handshake=False, pulse_ms=50) as sim:
        section = plc_section(tcp(sim), trigger="holding:10", handshake=False, poll_ms=20)
        config = write_config(tmp_path, broker, {}, extra=section)
        async with subscriber(broker, f"{NODE}/#") as got, running_agent(config) as agent:
            tracker, health = agent.batch_lines.named(None), agent.lines[0].health
            counter_state = "batch:filler:counter"
            await wait_until(lambda: agent.outbox.state(counter_state) == "0", what="baseline")
            for n in range(1, 4):
                await complete(sim, quantity=n)
                await wait_until(lambda n=n: tracker.completed == n, what=f"batch {n}")  # type: ignore[misc]
            async with sim.stopped():
                await wait_until(lambda: not health.connected, what="outage noticed")
                await complete(sim, quantity=4)  # the counter steps while the link is down
            await wait_until(lambda: tracker.completed == 4, timeout=30, what="batch 4")
            await sim.restart(zero=True)  # counter back to 0: a new baseline, not a batch
            await wait_until(lambda: agent.outbox.state(counter_state) == "0", timeout=30)
            for n in range(5, 7):
                await complete(sim, quantity=n)
                await wait_until(lambda n=n: tracker.completed == n, what=f"batch {n}")  # type: ignore[misc]
            await got.wait_for(lambda g: len(completed(g)) == 6)
            assert sim.requests[16] == 0, "no write in counter mode"
    events = completed(got)
    assert [e["data"]["quantity"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e["data"]["params"]["batch_no"] for e in events] == [1, 2, 3, 4, 1, 2]
    for e in events:
        check_trace_code(e["data"])
    assert outbox_count(tmp_path / "data", "batch.completed") == 6


async def test_edge_trigger_stamps_each_pulse_once(tmp_path: Path, broker: Broker) -> None:
    # a pulse much longer than the poll period: edge mode is only as good as that margin
    async with FillingLineSimulator(port=0, auto=False, handshake=False, pulse_ms=200) as sim:
        section = plc_section(tcp(sim), handshake=False, poll_ms=20)
        config = write_config(tmp_path, broker, {}, extra=section)
        async with subscriber(broker, f"{NODE}/#") as got, running_agent(config) as agent:
            tracker = agent.batch_lines.named(None)
            for n in range(1, 6):
                # the trigger must be seen low between two pulses too
                await wait_until(lambda: agent.outbox.state("batch:filler:level") == "0")
                await complete(sim, quantity=n)
                await wait_until(lambda n=n: tracker.completed == n, what=f"batch {n}")  # type: ignore[misc]
            await got.wait_for(lambda g: len(completed(g)) == 5)
            await wait_until(lambda: not sim.value(TRIGGER), what="last pulse over")
    assert [e["data"]["quantity"] for e in completed(got)] == [1, 2, 3, 4, 5]
    assert outbox_count(tmp_path / "data", "batch.completed") == 5


# --- Modbus RTU through a serial line -----------------------------------------------------


class SerialCable:
    """Two pty pairs joined back to back: each end is a tty device opened by path."""

    def __init__(self, workdir: Path) -> None:
        self.ends: list[str] = []
        self._controllers: list[int] = []
        self._fds: list[int] = []
        for name in ("plc", "agent"):
            controller, device = os.openpty()
            tty.setraw(controller)
            tty.setraw(device)
            os.set_blocking(controller, False)
            link = workdir / f"rtu-{name}"
            link.symlink_to(os.ttyname(device))
            self.ends.append(str(link))
            self._controllers.append(controller)
            self._fds += [controller, device]

    @contextlib.contextmanager
    def relaying(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        a, b = self._controllers
        loop.add_reader(a, self._relay, a, b)
        loop.add_reader(b, self._relay, b, a)
        try:
            yield
        finally:
            for fd in self._controllers:
                loop.remove_reader(fd)
            for fd in self._fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    @staticmethod
    def _relay(source: int, target: int) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(target, os.read(source, 4096))


async def test_rtu_line_through_a_serial_cable(tmp_path: Path, broker: Broker) -> None:
    cable = SerialCable(tmp_path)
    plc_end, agent_end = cable.ends
    # Linux ptys refuse parity bits (tcsetattr EINVAL), so this line runs 8N1.
    where = f'protocol = "modbus-rtu"\nport = "{agent_end}"\nparity = "N"\nbaudrate = 19200'
    config = write_config(tmp_path, broker, {}, extra=plc_section(where, poll_ms=30))
    with cable.relaying():
        async with (
            FillingLineSimulator(serial_port=plc_end, parity="N", auto=False) as sim,
            subscriber(broker, f"{NODE}/#") as got,
            running_agent(config) as agent,
        ):
            tracker = agent.batch_lines.named(None)
            for n in range(1, 4):
                await complete(sim, quantity=n)
                await finish_handshake(sim, tracker, n)
            await got.wait_for(lambda g: len(completed(g)) == 3)
            assert sim.last_code == completed(got)[-1]["data"]["trace_code"]
    assert [e["data"]["quantity"] for e in completed(got)] == [1, 2, 3]


# --- work orders and materials ------------------------------------------------------------


async def command(broker: Broker, body: bytes) -> dict[str, Any]:
    """Publish `cmd/work-order` as the MES does and return the agent's reply."""
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(f"{NODE}/cmd/work-order/reply", qos=1)
        await client.publish(f"{NODE}/cmd/work-order", body, qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, bytes)
                reply: dict[str, Any] = json.loads(payload)
                return reply
    raise AssertionError("no reply")


async def test_work_orders_from_mes_scan_and_page_and_materials_in_the_lot(
    tmp_path: Path, broker: Broker, sim: FillingLineSimulator, pty: Pty
) -> None:
    config = write_config(
        tmp_path, broker, {"line-feed": ("line", pty)}, extra=plc_section(tcp(sim), poll_ms=20)
    )
    async with subscriber(broker, f"{NODE}/#") as got, running_agent(config) as agent:
        tracker = agent.batch_lines.named(None)
        await wait_until(lambda: agent.commands is not None and agent.commands.connected)
        body = {"work_order": "WO-1", "gtin": GTIN, "planned_qty": 500}
        assert await command(broker, json.dumps(body).encode()) == {
            "ok": True,
            "work_order": "WO-1",
        }
        await got.wait_for(lambda g: started(g)[-1]["data"]["work_order"] == "WO-1")
        lot_1 = started(got)[-1]["data"]["lot"]
        for bad in (
            b'{"work_order": "WO-X", "gtin": "09501101530004"}',  # check digit
            b'{"work_order": "WO-X", "colour": "red"}',
            b"not json",
            b'{"work_order": "WO-X", "lot": "' + b"L" * 30 + b'"}',
        ):
            reply = await command(broker, bad)
            assert reply["ok"] is False
            assert reply["error"]
        assert tracker.work_order.work_order == "WO-1"
        material = "]d2010950110153001017270101\x1d10M-77\x1d21S1"
        pty.write(material.encode() + b"\r\n")
        await got.wait_for(
            lambda g: any(True for _ in g.payloads(lambda t: t.endswith("/material.consumed")))
        )
        consumed = got.payloads(lambda t: t.endswith("/material.consumed"))[0]["data"]
        assert consumed["batch"] == lot_1
        await complete(sim, quantity=500)
        await finish_handshake(sim, tracker, 1)
        pty.write(b"WO:WO-2\r\n")  # a work-order barcode at the line
        await got.wait_for(lambda g: started(g)[-1]["data"]["work_order"] == "WO-2")
        await agent.view.set_work_order("WO-3", None, "LOT-3", 10)  # the status page
        await got.wait_for(lambda g: started(g)[-1]["data"]["work_order"] == "WO-3")
        await complete(sim, quantity=10)
        await finish_handshake(sim, tracker, 2)
        await got.wait_for(lambda g: len(completed(g)) == 2)
        assert all(r.running for r in agent.state.tasks.values())
    first, second = (e["data"] for e in completed(got))
    assert (first["work_order"], first["lot"], first["quantity"]) == ("WO-1", lot_1, 500)
    [used] = first["materials"]
    assert (used["gtin"], used["lot"], used["serial"]) == ("09501101530010", "M-77", "S1")
    assert (second["work_order"], second["lot"], second["materials"]) == ("WO-3", "LOT-3", [])
    check_trace_code(first)
    check_trace_code(second)
    assert second["serial"] == "000002"
