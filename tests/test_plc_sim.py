"""The filling-line simulator on its own: register map, batch cycles, restarts, standalone run."""

from __future__ import annotations

import asyncio
import math
import sys

import pytest
from pymodbus.client import AsyncModbusTcpClient
from support import free_port, wait_until

from drivers.base import DeviceUnavailable
from drivers.plcs.modbus import ModbusPlc, ModbusTcpSettings
from drivers.plcs.registers import RegisterAddress
from drivers.simulators.modbus_plc import (
    ACK,
    CODE,
    COUNTER,
    LINE_SPEED,
    QUANTITY,
    TEMPERATURE,
    TRIGGER,
    FillingLineSimulator,
)

MAP = {
    "trigger": TRIGGER,
    "ack": ACK,
    "counter": COUNTER,
    "quantity": QUANTITY,
    "temperature": TEMPERATURE,
    "speed": LINE_SPEED,
    "code": CODE,
}


def plc_for(sim: FillingLineSimulator) -> ModbusPlc:
    return ModbusPlc("sim", ModbusTcpSettings(host=sim.host, port=sim.port, timeout_ms=500))


def test_register_map_is_the_documented_one() -> None:
    assert {name: str(a) for name, a in MAP.items()} == {
        "trigger": "coil:0",
        "ack": "coil:1",
        "counter": "holding:10",
        "quantity": "holding:100:uint32",
        "temperature": "holding:110:float32",
        "speed": "holding:112",
        "code": "holding:200:string:64",
    }


async def test_counts_units_and_holds_the_trigger_until_acknowledged() -> None:
    async with (
        FillingLineSimulator(port=0, batch_units=6, units_per_s=100) as sim,
        plc_for(sim) as plc,
    ):
        values = await plc.read(MAP)
        assert math.isclose(float(values["temperature"]), 4.0, abs_tol=0.5)
        await wait_until(lambda: sim.value(TRIGGER) is True, what="batch complete")
        values = await plc.read(MAP)
        assert values["trigger"] is True
        assert values["quantity"] == 6
        assert values["counter"] == sim.batches_completed == 1
        assert values["speed"] == 0
        await asyncio.sleep(0.2)  # the line is stopped while the trigger is held
        assert sim.value(TRIGGER) is True
        assert sim.batches_completed == 1
        await plc.write(CODE, "LOT-1")
        await plc.write(ACK, value=True)
        await wait_until(lambda: sim.value(TRIGGER) is False, what="trigger dropped")
        assert sim.value(QUANTITY) == 6  # nothing counted before the ack is cleared
        await plc.write(ACK, value=False)
        await wait_until(lambda: sim.batches_completed == 2, what="next batch")
        assert sim.last_code == "LOT-1"


async def test_pulse_mode_does_not_wait() -> None:
    async with FillingLineSimulator(
        port=0, batch_units=4, units_per_s=200, handshake=False, pulse_ms=50
    ) as sim:
        await wait_until(lambda: sim.value(TRIGGER) is True, what="pulse up")
        assert sim.value(QUANTITY) == 4  # held while the pulse is high
        await wait_until(lambda: sim.value(TRIGGER) is False, what="pulse down")
        await wait_until(lambda: sim.batches_completed >= 3, what="more batches, no ack")


async def test_manual_batches_only() -> None:
    async with FillingLineSimulator(port=0, auto=False) as sim:
        await asyncio.sleep(0.1)
        assert sim.value(QUANTITY) == 0
        await sim.complete_batch(quantity=42)
        assert (sim.value(TRIGGER), sim.value(QUANTITY), sim.batches_completed) == (True, 42, 1)
        with pytest.raises(RuntimeError, match="not finished"):
            await sim.complete_batch(quantity=1)


async def test_stop_keeps_memory_restart_zeroes_it() -> None:
    async with FillingLineSimulator(port=0, auto=False) as sim:
        port = sim.port
        await sim.complete_batch(quantity=7)
        async with sim.stopped():
            assert not sim.running
            async with AsyncModbusTcpClient(
                sim.host, port=port, timeout=0.3, retries=0, reconnect_delay=0
            ) as client:
                assert not client.connected
        async with plc_for(sim) as plc:
            assert await plc.read({"q": QUANTITY, "n": COUNTER}) == {"q": 7, "n": 1}
        await sim.restart(zero=True)
        assert sim.port == port
        async with plc_for(sim) as plc:
            assert await plc.read({"q": QUANTITY, "n": COUNTER, "t": TRIGGER}) == {
                "q": 0,
                "n": 0,
                "t": False,
            }


async def test_faults_hit_clients_but_not_the_program() -> None:
    async with FillingLineSimulator(port=0, auto=False) as sim, plc_for(sim) as plc:
        sim.faults.exception_code = 2
        await sim.complete_batch(quantity=3)  # the program's own writes still work
        assert sim.value(QUANTITY) == 3
        sim.faults.clear()
        assert await plc.read({"q": QUANTITY}) == {"q": 3}
        assert sim.requests[3] >= 1


async def test_illegal_address_is_an_exception_response() -> None:
    async with (
        FillingLineSimulator(port=0, auto=False) as sim,
        AsyncModbusTcpClient(sim.host, port=sim.port, timeout=1, retries=0) as client,
    ):
        response = await client.read_holding_registers(400, count=1, device_id=1)
        assert response.isError()
        assert sim.value(RegisterAddress.parse("holding:299")) == 0


async def test_standalone_command() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "drivers.simulators.modbus_plc",
        "--port",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        plc = ModbusPlc("sim", ModbusTcpSettings(host="127.0.0.1", port=port, timeout_ms=500))
        async with asyncio.timeout(20):
            while True:
                try:
                    async with plc:
                        values = await plc.read({"t": TEMPERATURE})
                        break
                except DeviceUnavailable:  # not listening yet
                    await asyncio.sleep(0.1)
        assert math.isclose(float(values["t"]), 4.0, abs_tol=0.5)
    finally:
        process.terminate()
        await process.wait()
