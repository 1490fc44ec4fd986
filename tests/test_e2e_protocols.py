"""Batches end to end over OPC UA, S7 and EtherNet/IP: each protocol's own server, a real agent
and a real mosquitto, counted as the Modbus line is (`test_e2e_batches`).

Every trigger mode per protocol; a SIGKILL between commit and ack never gives a second code; the
PLC going away in the middle of a handshake (after the agent stamped, before its ack) is
acknowledged again, not stamped again; an address the PLC does not have is named in the error.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from agent_harness import AgentProcess, running_agent, write_config
from protocol_lines import PROTOCOLS, address, line_on, plc_section
from support import subscriber, wait_until
from test_e2e_batches import (
    NODE,
    check_restarted_batches,
    check_trace_code,
    completed,
    outbox_count,
)

from agent.config import ConfigError, load_config
from drivers.simulators.s7_plc import S7LineSimulator

if TYPE_CHECKING:
    from pathlib import Path

    from support import Broker

    from agent.batches.tracker import BatchTracker
    from drivers.simulators.line_program import SimulatedPlc

per_protocol = pytest.mark.parametrize("protocol", PROTOCOLS)


async def complete(sim: SimulatedPlc, quantity: int) -> None:
    """Complete a batch as soon as the PLC program has left its previous one."""
    async with asyncio.timeout(20):
        while True:
            try:
                await sim.complete_batch(quantity)
            except RuntimeError:  # the program has not yet stepped out of the last handshake
                await asyncio.sleep(0.01)
            else:
                return


async def finish_handshake(sim: SimulatedPlc, tracker: BatchTracker, count: int) -> None:
    """Wait until `count` batches are stamped and the PLC's handshake is over."""
    await wait_until(
        lambda: (
            tracker.completed >= count
            and not sim.value("trigger")
            and not sim.value("ack")
            and sim.last_code != ""
        ),
        timeout=20,
        what=f"handshake of batch {count} finished",
    )


@per_protocol
async def test_handshake_batches_arrive_once_each(
    tmp_path: Path, broker: Broker, protocol: str
) -> None:
    async with line_on(protocol) as sim:
        config = write_config(tmp_path, broker, {}, extra=plc_section(protocol, sim))
        async with subscriber(broker, f"{NODE}/#") as got, running_agent(config) as agent:
            tracker = agent.batch_lines.named(None)
            for n in range(1, 6):
                await complete(sim, quantity=100 + n)
                await finish_handshake(sim, tracker, n)
            await got.wait_for(lambda g: len(completed(g)) == 5)
            assert agent.lines[0].mode == "handshake"
            assert agent.lines[0].health.connected
            last_written = sim.last_code
    data = [e["data"] for e in completed(got)]
    assert [d["serial"] for d in data] == [f"{n:06d}" for n in range(1, 6)]
    assert [d["quantity"] for d in data] == [101, 102, 103, 104, 105]
    assert all(3.5 < d["params"]["fill_temp_c"] < 4.5 for d in data)
    assert all(d["params"]["line_speed"] == 0 for d in data)  # one read: the line stopped
    for d in data:
        check_trace_code(d)
    assert last_written == data[-1]["trace_code"]
    assert outbox_count(tmp_path / "data", "batch.completed") == 5


@per_protocol
async def test_counter_trigger_counts_each_step_once(
    tmp_path: Path, broker: Broker, protocol: str
) -> None:
    async with line_on(protocol, handshake=False, pulse_ms=50) as sim:
        section = plc_section(protocol, sim, mode="counter")
        config = write_config(tmp_path, broker, {}, extra=section)
        async with subscriber(broker, f"{NODE}/#") as got, running_agent(config) as agent:
            tracker = agent.batch_lines.named(None)
            counter_state = "batch:filler:counter"
            await wait_until(lambda: agent.outbox.state(counter_state) == "0", what="baseline")
            assert agent.lines[0].mode == "counter"
            for n in range(1, 4):
                await complete(sim, quantity=n)
                await wait_until(lambda n=n: tracker.completed == n, what=f"batch {n}")  # type: ignore[misc]
            await sim.restart(zero=True)  # counter back to 0: a new baseline, not a batch
            await wait_until(lambda: agent.outbox.state(counter_state) == "0", timeout=30)
            await complete(sim, quantity=4)
            await wait_until(lambda: tracker.completed == 4, what="batch 4")
            await got.wait_for(lambda g: len(completed(g)) == 4)
    assert [e["data"]["quantity"] for e in completed(got)] == [1, 2, 3, 4]
    assert outbox_count(tmp_path / "data", "batch.completed") == 4


@per_protocol
async def test_edge_trigger_stamps_each_pulse_once(
    tmp_path: Path, broker: Broker, protocol: str
) -> None:
    # a pulse much longer than the poll period: edge mode is only as good as that margin
    async with line_on(protocol, handshake=False, pulse_ms=300) as sim:
        section = plc_section(protocol, sim, mode="edge")
        config = write_config(tmp_path, broker, {}, extra=section)
        async with subscriber(broker, f"{NODE}/#") as got, running_agent(config) as agent:
            tracker = agent.batch_lines.named(None)
            for n in range(1, 4):
                await wait_until(lambda: agent.outbox.state("batch:filler:level") == "0")
                await complete(sim, quantity=n)
                await wait_until(lambda n=n: tracker.completed == n, what=f"batch {n}")  # type: ignore[misc]
            assert agent.lines[0].mode == "edge"
            await got.wait_for(lambda g: len(completed(g)) == 3)
            await wait_until(lambda: not sim.value("trigger"), what="last pulse over")
    assert [e["data"]["quantity"] for e in completed(got)] == [1, 2, 3]
    assert outbox_count(tmp_path / "data", "batch.completed") == 3


@per_protocol
async def test_plc_gone_mid_handshake_is_acknowledged_not_stamped_again(
    tmp_path: Path, broker: Broker, protocol: str
) -> None:
    async with line_on(protocol) as sim:
        config = write_config(tmp_path, broker, {}, extra=plc_section(protocol, sim))
        async with subscriber(broker, f"{NODE}/#") as got, running_agent(config) as agent:
            line = agent.lines[0]
            tracker = agent.batch_lines.named(None)
            ack = address(protocol, "ack")
            write = line.plc.write
            vanished = asyncio.Event()

            async def vanish_before_the_ack(target: Any, value: Any) -> None:
                if str(target) == ack and value is True and not vanished.is_set():
                    vanished.set()  # the batch is committed; the PLC goes before the ack
                    await sim.stop()
                await write(target, value)

            line.plc.write = vanish_before_the_ack  # type: ignore[method-assign,assignment]
            await complete(sim, quantity=7)
            await asyncio.wait_for(vanished.wait(), 20)
            await wait_until(lambda: not line.health.connected, what="the outage noticed")
            assert tracker.completed == 1
            await sim.start()
            await finish_handshake(sim, tracker, 1)
            # a reboot that clears the PLC's memory mid-handshake: the next batch is new
            await complete(sim, quantity=8)
            await wait_until(lambda: tracker.completed == 2, what="batch 2 stamped")
            await sim.restart(zero=True)
            await complete(sim, quantity=9)
            await finish_handshake(sim, tracker, 3)
            await got.wait_for(lambda g: len(completed(g)) == 3)
    events = completed(got)
    assert [e["data"]["quantity"] for e in events] == [7, 8, 9]
    assert [e["data"]["serial"] for e in events] == ["000001", "000002", "000003"]
    assert outbox_count(tmp_path / "data", "batch.completed") == 3


@per_protocol
@pytest.mark.parametrize("point", ["batch.after_commit", "batch.before_ack"])
async def test_sigkill_between_commit_and_ack_stamps_once(
    tmp_path: Path,
    broker: Broker,
    monkeypatch: pytest.MonkeyPatch,
    protocol: str,
    point: str,
) -> None:
    async with line_on(protocol) as sim:
        config = write_config(tmp_path, broker, {}, extra=plc_section(protocol, sim))
        proc = AgentProcess(config, tmp_path / "agent.log")
        async with subscriber(broker, f"{NODE}/#") as got:
            await sim.complete_batch(quantity=11)  # held until acknowledged
            monkeypatch.setenv("LINESIDE_FAULT", point)
            proc.start()
            monkeypatch.delenv("LINESIDE_FAULT")
            try:
                assert proc.process is not None
                await wait_until(
                    lambda: proc.process is not None and proc.process.poll() is not None,
                    timeout=60,
                    what="the fault point kills the agent",
                )
                assert proc.process.returncode == -9, proc.log()[-3000:]
                proc.process = None
                assert outbox_count(tmp_path / "data", "batch.completed") == 1
                assert sim.value("trigger")
                assert not sim.value("ack")  # the PLC was never told
                code_before_restart = sim.last_code
                proc.start()
                await wait_until(
                    lambda: (
                        not sim.value("trigger") and not sim.value("ack") and sim.last_code != ""
                    ),
                    timeout=60,
                    what="the restarted agent ends the handshake",
                )
                await got.wait_for(lambda g: len(completed(g)) == 1)
                await complete(sim, quantity=12)  # the line goes on
                await got.wait_for(lambda g: len(completed(g)) == 2)
            finally:
                if proc.process is not None:
                    assert proc.terminate() == 0
    check_restarted_batches(got, tmp_path / "data", point, code_before_restart, proc)


MISSING = {"opcua": "ns=2;s=Filler.NoSuchNode", "s7": "DB99.DBW0:int", "enip": "NoSuchTag"}
SAID = {"opcua": "BadNodeIdUnknown", "s7": "DB99", "enip": "no such tag"}


@per_protocol
async def test_an_address_the_plc_lacks_is_named_and_nothing_is_stamped(
    tmp_path: Path, broker: Broker, protocol: str
) -> None:
    async with line_on(protocol) as sim:
        section = plc_section(protocol, sim, params={"bogus": MISSING[protocol]})
        config = write_config(tmp_path, broker, {}, extra=section)
        async with running_agent(config) as agent:
            health = agent.lines[0].health
            await sim.complete_batch(quantity=5)
            await wait_until(
                lambda: MISSING[protocol].split(":")[0] in (health.last_error or ""),
                timeout=20,
                what="the missing address named",
            )
            assert agent.batch_lines.named(None).completed == 0
            assert all(r.running for r in agent.state.tasks.values()), "no task crashed"
            assert agent.status_url is not None
            async with httpx.AsyncClient() as client:
                api = (await client.get(agent.status_url + "api/status")).json()
    [device] = [d for d in api["devices"] if d["id"] == "filler"]
    assert device["connected"] is False
    assert MISSING[protocol].split(":")[0] in device["last_error"]
    assert SAID[protocol] in device["last_error"]


@per_protocol
async def test_an_ack_of_the_wrong_type_is_refused_by_name(
    tmp_path: Path, broker: Broker, protocol: str
) -> None:
    async with line_on(protocol) as sim:
        quantity = address(protocol, "quantity")  # a number, and read-only on OPC UA
        section = plc_section(protocol, sim).replace(
            f'ack = "{address(protocol, "ack")}"', f'ack = "{quantity}"'
        )
        config = write_config(tmp_path, broker, {}, extra=section)
        if protocol == "s7":  # the address says its type: refused before anything runs
            with pytest.raises(ConfigError, match=r"plcs\[0\]\.batch\.ack: DB10\.DBD2:dint is"):
                load_config(config)
            return
        async with running_agent(config) as agent:
            line = agent.lines[0]
            await sim.complete_batch(quantity=5)
            await wait_until(lambda: line.signal_error is not None, what="the ack refused")
            assert f"plcs.batch.ack {quantity} is" in (line.health.last_error or "")
            assert "must be a writable bool" in (line.health.last_error or "")
            await asyncio.sleep(0.3)  # polls go on; nothing is stamped
            assert agent.batch_lines.named(None).completed == 0
            assert not sim.value("ack")


async def test_s7_refused_slow_and_silent_answers_are_named_and_the_line_recovers(
    tmp_path: Path, broker: Broker
) -> None:
    protocol = "s7"  # the S7 CPU's own faults (its simulator has them)
    async with line_on(protocol) as sim:
        assert isinstance(sim, S7LineSimulator)
        config = write_config(tmp_path, broker, {}, extra=plc_section(protocol, sim))
        async with subscriber(broker, f"{NODE}/#") as got, running_agent(config) as agent:
            health, tracker = agent.lines[0].health, agent.batch_lines.named(None)
            await wait_until(lambda: health.connected, what="PLC connected")
            faults: list[tuple[str, object, str]] = [
                ("refuse", 0x8104, "allow PUT/GET"),  # an S7-1200 without PUT/GET access
                ("delay_s", 2.0, "no answer"),  # slower than timeout_ms
                ("drop", True, "no answer"),
            ]
            for n, (fault, value, said) in enumerate(faults, start=1):
                setattr(sim.faults, fault, value)
                await complete(sim, quantity=n)  # completed while the PLC answers badly
                await wait_until(
                    lambda said=said: said in (health.last_error or ""),  # type: ignore[misc]
                    what=f"{fault} named",
                )
                assert tracker.completed == n - 1
                sim.faults.clear()
                await finish_handshake(sim, tracker, n)
            await got.wait_for(lambda g: len(completed(g)) == len(faults))
            assert all(r.running for r in agent.state.tasks.values()), "no task crashed"
    assert [e["data"]["quantity"] for e in completed(got)] == [1, 2, 3]
    assert outbox_count(tmp_path / "data", "batch.completed") == len(faults)
