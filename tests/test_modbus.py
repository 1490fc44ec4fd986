"""ModbusPlc against the real pymodbus server of the filling-line simulator, over TCP and RTU."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from typing import TYPE_CHECKING

import pytest
from pydantic import TypeAdapter, ValidationError
from support import free_port, wait_until

from drivers.base import DeviceDisconnected, DeviceProtocolError, DeviceUnavailable
from drivers.plcs.modbus import (
    ModbusPlc,
    ModbusRtuSettings,
    ModbusSettings,
    ModbusTcpSettings,
    PlcSnapshot,
)
from drivers.plcs.registers import RegisterAddress, Value
from drivers.simulators.modbus_plc import (
    ACK,
    CODE,
    COUNTER,
    QUANTITY,
    TEMPERATURE,
    TRIGGER,
    FillingLineSimulator,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

WATCH = {"trigger": TRIGGER, "ack": ACK, "counter": COUNTER, "quantity": QUANTITY}


def addr(text: str) -> RegisterAddress:
    return RegisterAddress.parse(text)


def tcp(sim: FillingLineSimulator, **overrides: object) -> ModbusTcpSettings:
    fields: dict[str, object] = {"host": sim.host, "port": sim.port, "poll_ms": 20}
    fields.update(overrides)
    return ModbusTcpSettings.model_validate(fields)


@pytest.fixture
async def sim() -> AsyncIterator[FillingLineSimulator]:
    async with FillingLineSimulator(port=0, auto=False, seed=1) as s:
        yield s


class Stream:
    """Consumes `snapshots()` in a task of the test, keeping what it yields."""

    def __init__(self, plc: ModbusPlc) -> None:
        self.plc = plc
        self.seen: list[PlcSnapshot] = []
        self.changed = asyncio.Event()

    async def run(self) -> None:
        async for snapshot in self.plc.snapshots():
            self.seen.append(snapshot)
            self.changed.set()

    async def wait_for(self, predicate: Callable[[PlcSnapshot], bool], within: float = 10) -> None:
        """Wait for a snapshot after now that satisfies `predicate`."""
        start = len(self.seen)
        async with asyncio.timeout(within):
            while not any(predicate(s) for s in self.seen[start:]):
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def streaming(plc: ModbusPlc) -> AsyncIterator[Stream]:
    stream = Stream(plc)
    async with asyncio.TaskGroup() as group:
        task = group.create_task(stream.run(), name="test:snapshots")
        try:
            yield stream
        finally:
            task.cancel()


def test_settings_models() -> None:
    adapter: TypeAdapter[ModbusSettings] = TypeAdapter(ModbusSettings)
    rtu = adapter.validate_python({"protocol": "modbus-rtu", "port": "/dev/ttyS1"})
    assert isinstance(rtu, ModbusRtuSettings)
    assert (rtu.baudrate, rtu.parity, rtu.stopbits, rtu.bytesize, rtu.unit) == (19200, "E", 1, 8, 1)
    tcp_settings = adapter.validate_python({"protocol": "modbus-tcp", "host": "10.0.0.20"})
    assert isinstance(tcp_settings, ModbusTcpSettings)
    assert (tcp_settings.port, tcp_settings.poll_ms, tcp_settings.word_order) == (502, 100, "big")
    with pytest.raises(ValidationError, match="extra"):
        adapter.validate_python({"protocol": "modbus-tcp", "host": "h", "baud": 1})
    with pytest.raises(ValidationError):
        adapter.validate_python({"protocol": "modbus-rtu", "port": "/dev/x", "parity": "X"})
    for model in (ModbusTcpSettings, ModbusRtuSettings):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"

    class PlcConfig(ModbusTcpSettings):  # the agent adds its own fields like this
        id: str

    assert PlcConfig(id="filler", host="h").port == 502


async def test_read_and_write_every_type(sim: FillingLineSimulator) -> None:
    values: dict[str, tuple[RegisterAddress, Value]] = {
        "coil": (addr("coil:5"), True),
        "uint16": (addr("holding:20"), 54321),
        "int16": (addr("holding:21:int16"), -1234),
        "uint32": (addr("holding:22:uint32"), 3_000_000_000),
        "int32": (addr("holding:24:int32"), -2_000_000_000),
        "float32": (addr("holding:26:float32"), 4.5),
        "string": (CODE, "(01)09501101530003(10)L1(21)000007"),
    }
    async with ModbusPlc("filler", tcp(sim)) as plc:
        for address, value in values.values():
            await plc.write(address, value)
        assert sim.last_code == "(01)09501101530003(10)L1(21)000007"
        await sim.set_value(addr("discrete:3"), value=True)
        await sim.set_value(addr("input:7:int32"), -5)
        read = await plc.read({name: a for name, (a, _) in values.items()})
        assert read == {name: v for name, (_, v) in values.items()}
        assert await plc.read({"d": addr("discrete:3"), "i": addr("input:7:int32")}) == {
            "d": True,
            "i": -5,
        }
        with pytest.raises(ValueError, match="read-only"):
            await plc.write(addr("input:7"), 1)
        assert plc.health.connected


async def test_little_word_order(sim: FillingLineSimulator) -> None:
    async with ModbusPlc("filler", tcp(sim, word_order="little")) as plc:
        await plc.write(addr("holding:30:uint32"), 0x12345678)
        assert sim.value(addr("holding:30")) == 0x5678
        assert await plc.read({"v": addr("holding:30:uint32")}) == {"v": 0x12345678}


async def test_coalescing_reduces_requests(sim: FillingLineSimulator) -> None:
    watch = {
        "trigger": TRIGGER,
        "ack": ACK,
        "counter": COUNTER,
        "quantity": QUANTITY,
        "temperature": TEMPERATURE,
        "speed": addr("holding:112"),
        "code": CODE,
    }
    async with ModbusPlc("filler", tcp(sim), watch=watch) as plc:
        sim.requests.clear()
        snapshot = await plc.poll()
        assert set(snapshot.values) == set(watch)
        # coils 0-1 in one read; holding 10, 100-112 and 200-231 in three
        assert sim.requests == {1: 1, 3: 3}
        assert snapshot.poll_no == 1
        assert not snapshot.after_reconnect


async def test_connect_failure_is_device_unavailable() -> None:
    plc = ModbusPlc("filler", ModbusTcpSettings(host="127.0.0.1", port=free_port(), timeout_ms=500))
    with pytest.raises(DeviceUnavailable):
        await plc.__aenter__()
    assert not plc.health.connected
    assert plc.health.last_error is not None


async def test_exception_response_and_timeout_are_protocol_errors(
    sim: FillingLineSimulator,
) -> None:
    async with ModbusPlc("filler", tcp(sim, timeout_ms=200)) as plc:
        sim.faults.exception_code = 2
        with pytest.raises(DeviceProtocolError, match="exception code 2"):
            await plc.read({"c": COUNTER})
        sim.faults.clear()
        sim.faults.drop = True
        with pytest.raises(DeviceProtocolError):
            await plc.read({"c": COUNTER})
        sim.faults.clear()
        await sim.stop()
        await wait_until(lambda: not plc.connected, what="client notices the closed link")
        with pytest.raises(DeviceDisconnected):
            await plc.read({"c": COUNTER})


async def test_handshake_cycle(sim: FillingLineSimulator) -> None:
    async with (
        ModbusPlc("filler", tcp(sim), watch=WATCH) as plc,
        streaming(plc) as stream,
    ):
        await stream.wait_for(lambda s: s.values["trigger"] is False)
        await sim.complete_batch(quantity=118)
        await stream.wait_for(lambda s: s.values["trigger"] is True)
        trigger = next(s for s in stream.seen if s.values["trigger"])
        assert trigger.values["quantity"] == 118
        assert trigger.values["counter"] == 1
        await plc.write(CODE, "CODE-1")
        await plc.write(ACK, value=True)
        await stream.wait_for(lambda s: s.values["trigger"] is False and s.values["ack"] is True)
        await plc.write(ACK, value=False)
        await stream.wait_for(lambda s: not s.values["ack"])
        assert sim.last_code == "CODE-1"
        assert sim.batches_completed == 1
        await sim.complete_batch(quantity=120)  # the PLC is ready for the next batch
        await stream.wait_for(lambda s: s.values["trigger"] is True and s.values["counter"] == 2)


async def test_automatic_line_completes_batches() -> None:
    async with (
        FillingLineSimulator(port=0, batch_units=10, units_per_s=200) as sim,
        ModbusPlc("filler", tcp(sim), watch=WATCH) as plc,
        streaming(plc) as stream,
    ):
        await stream.wait_for(lambda s: s.values["trigger"] is True)
        assert stream.seen[-1].values["quantity"] == 10
        await plc.write(ACK, value=True)
        await wait_until(lambda: sim.value(TRIGGER) is False, what="trigger dropped")
        await plc.write(ACK, value=False)
        await stream.wait_for(lambda s: s.values["counter"] == 2 and s.values["trigger"] is True)


@pytest.mark.faults
@pytest.mark.parametrize("fault", ["exception", "drop", "garbage", "stopped"])
async def test_faults_never_escape_and_recover(sim: FillingLineSimulator, fault: str) -> None:
    plc = ModbusPlc(
        "filler", tcp(sim, timeout_ms=200), watch=WATCH, backoff_base_s=0.05, backoff_cap_s=0.2
    )
    async with plc, streaming(plc) as stream:
        await stream.wait_for(lambda _: True)
        errors_before = plc.health.errors
        polls_before = len(stream.seen)
        match fault:
            case "exception":
                sim.faults.exception_code = 4
            case "drop":
                sim.faults.drop = True
            case "garbage":
                sim.faults.garbage = True
            case "stopped":
                await sim.stop()
        await wait_until(lambda: plc.health.errors >= errors_before + 2, what="errors recorded")
        # the link may be up for a moment between failed polls, unless the PLC is gone
        assert fault != "stopped" or not plc.health.connected
        assert plc.health.last_error is not None
        assert len(stream.seen) <= polls_before + 1  # nothing partial or stale meanwhile
        await sim.set_value(COUNTER, 77)
        sim.faults.clear()
        await sim.start()
        await stream.wait_for(lambda s: s.after_reconnect)
        fresh = next(s for s in stream.seen if s.after_reconnect)
        assert fresh.values["counter"] == 77
        assert plc.health.connected
        assert plc.health.reconnects >= 1


async def test_plc_restart_flags_reconnect_and_fresh_values(sim: FillingLineSimulator) -> None:
    plc = ModbusPlc(
        "filler", tcp(sim, timeout_ms=300), watch=WATCH, backoff_base_s=0.05, backoff_cap_s=0.2
    )
    async with plc, streaming(plc) as stream:
        await sim.complete_batch(quantity=50)
        await stream.wait_for(lambda s: s.values["counter"] == 1)
        await sim.restart(zero=True)
        await stream.wait_for(lambda s: s.after_reconnect)
        fresh = next(s for s in stream.seen if s.after_reconnect)
        assert fresh.values == {"trigger": False, "ack": False, "counter": 0, "quantity": 0}
        assert all(s.values["counter"] == 0 for s in stream.seen[stream.seen.index(fresh) :])


async def test_snapshots_wait_for_a_plc_that_is_not_there_yet() -> None:
    port = free_port()
    plc = ModbusPlc(
        "filler",
        ModbusTcpSettings(host="127.0.0.1", port=port, poll_ms=20, timeout_ms=200),
        watch=WATCH,
        backoff_base_s=0.05,
        backoff_cap_s=0.2,
    )
    async with streaming(plc) as stream:
        await wait_until(lambda: plc.health.errors >= 2, what="connect failures recorded")
        assert stream.seen == []
        async with FillingLineSimulator(port=port, auto=False):
            await stream.wait_for(lambda _: True)
        assert not stream.seen[0].after_reconnect  # nothing was missed: there was nothing yet
    assert not plc.connected


async def test_polls_follow_the_clock(
    sim: FillingLineSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.plcs.modbus")
    plc = ModbusPlc("filler", tcp(sim, poll_ms=10), watch=WATCH)
    async with plc, streaming(plc) as stream:
        await wait_until(lambda: len(stream.seen) >= 5, what="five polls")
    numbers = [s.poll_no for s in stream.seen]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == len(numbers)
    assert all(a.time <= b.time for a, b in zip(stream.seen, stream.seen[1:], strict=False))


# --- RTU over a pseudo-terminal pair ------------------------------------------------------


class SerialCable:
    """Two pty pairs joined back to back: each end is a real tty device opened by path."""

    def __init__(self, workdir: Path) -> None:
        self._fds: list[int] = []
        self.ends: list[str] = []
        self._controllers: list[int] = []
        for name in ("plc", "agent"):
            controller, device = os.openpty()
            tty.setraw(controller)
            tty.setraw(device)
            os.set_blocking(controller, False)
            link = workdir / name
            link.symlink_to(os.ttyname(device))
            self.ends.append(str(link))
            self._controllers.append(controller)
            self._fds += [controller, device]

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        a, b = self._controllers
        loop.add_reader(a, self._relay, a, b)
        loop.add_reader(b, self._relay, b, a)

    @staticmethod
    def _relay(source: int, target: int) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(target, os.read(source, 4096))

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in self._controllers:
            loop.remove_reader(fd)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
async def cable(tmp_path: Path) -> AsyncIterator[SerialCable]:
    c = SerialCable(tmp_path)
    c.start()
    try:
        yield c
    finally:
        c.close()


async def test_rtu_over_a_serial_line(cable: SerialCable) -> None:
    plc_end, agent_end = cable.ends
    # Linux ptys refuse parity bits (tcsetattr EINVAL), so this line runs 8N1.
    settings = ModbusRtuSettings(port=agent_end, parity="N", poll_ms=20, timeout_ms=500)
    async with (
        FillingLineSimulator(serial_port=plc_end, parity="N", auto=False) as sim,
        ModbusPlc("filler-rtu", settings, watch=WATCH) as plc,
        streaming(plc) as stream,
    ):
        await sim.complete_batch(quantity=99)
        await stream.wait_for(lambda s: s.values["trigger"] is True)
        assert stream.seen[-1].values["quantity"] == 99
        await plc.write(CODE, "RTU-CODE")
        await plc.write(ACK, value=True)
        await stream.wait_for(lambda s: s.values["trigger"] is False)
        assert sim.last_code == "RTU-CODE"
        assert await plc.read({"t": TEMPERATURE}) != {"t": 0.0}
