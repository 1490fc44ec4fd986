"""`lineside bench`'s PLC figures: each protocol's poll rate and p99, against the raw library.

For Modbus TCP, OPC UA, S7 and EtherNet/IP in turn, the filling-line simulator of that protocol
runs in this process (`drivers.simulators`, as `lineside demo --plc` runs it), and the six
values the demo line watches (trigger, ack, quantity, code, temperature, line speed) are read
`polls` times back to back:

- through the agent's driver (`agent.config.plc_links.open_plc`, `poll()`: one request, typed
  values, the health bookkeeping);
- raw, with the protocol library alone, in the same run: pymodbus reads of the same blocks,
  one asyncua Read of the same nodes, one python-snap7 `read_multi_vars` of the same DB ranges,
  one pylogix multi-tag `Read` of the same tags.

Figures per protocol `p`: `plc_<p>_polls_per_s`, `plc_<p>_p99_ms`, `plc_<p>_raw_polls_per_s`,
`plc_<p>_raw_p99_ms` and `plc_<p>_x_raw` (driver rate / raw rate).
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from typing import TYPE_CHECKING, Any

import pylogix
from asyncua import Client
from pymodbus.client import AsyncModbusTcpClient
from snap7.client import Client as S7Client
from snap7.type import Area

from agent.cli.demo_plcs import demo_plc
from agent.config.plc_links import open_plc
from agent.config.root import parse_config
from drivers.plcs.registers import Table, plan_reads
from drivers.plcs.s7_plan import plan_reads as plan_s7_reads

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from agent.config.plcs import AnyPlcConfig

PROTOCOLS = ("modbus", "opcua", "s7", "enip")
_AGENT = (
    '[agent]\nsite = "bench"\nnode = "bench"\n'
    '[[destinations]]\nname = "none"\nkind = "file"\ndir = "/nonexistent"\n'
)


async def _timed(polls: int, read: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """(polls per second, p99 in ms) of `polls` reads one after the other."""
    await read()  # warm: connections, caches
    times = []
    started = time.perf_counter()
    for _ in range(polls):
        before = time.perf_counter()
        await read()
        times.append(time.perf_counter() - before)
    elapsed = time.perf_counter() - started
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return polls / elapsed, p99 * 1000


async def _raw_modbus(config: Any, polls: int) -> tuple[float, float]:
    watched = list(_watch(config).values())
    blocks = plan_reads(watched)
    client = AsyncModbusTcpClient(config.host, port=config.port, reconnect_delay=0)
    await client.connect()
    try:

        async def read() -> None:
            for block in blocks:
                if block.table is Table.COIL:
                    await client.read_coils(block.start, count=block.count, device_id=config.unit)
                else:
                    await client.read_holding_registers(
                        block.start, count=block.count, device_id=config.unit
                    )

        return await _timed(polls, read)
    finally:
        client.close()


async def _raw_opcua(config: Any, polls: int) -> tuple[float, float]:
    async with Client(config.endpoint) as client:
        nodes = [client.get_node(str(a)) for a in _watch(config).values()]
        return await _timed(polls, lambda: client.read_values(nodes))


async def _raw_s7(config: Any, polls: int) -> tuple[float, float]:
    client = S7Client()
    await asyncio.to_thread(client.connect, config.host, config.rack, config.slot, config.port)
    try:
        plan = plan_s7_reads(_watch(config).values(), 480)
        items = [
            {"area": Area.DB, "db_number": db, "start": start, "size": end - start}
            for db, start, end in plan.ranges
        ]
        return await _timed(polls, lambda: asyncio.to_thread(client.read_multi_vars, items))
    finally:
        client.disconnect()


async def _raw_enip(config: Any, polls: int) -> tuple[float, float]:
    tags = [str(a) for a in _watch(config).values()]
    with pylogix.PLC(config.host, slot=config.slot, port=config.port) as client:
        return await _timed(polls, lambda: asyncio.to_thread(client.Read, tags))


_RAW = {"modbus": _raw_modbus, "opcua": _raw_opcua, "s7": _raw_s7, "enip": _raw_enip}


def _watch(config: AnyPlcConfig) -> dict[str, Any]:
    assert config.batch is not None
    batch = config.batch
    return {
        "trigger": batch.trigger,
        "ack": batch.ack,
        "quantity": batch.quantity,
        "code": batch.write_code_to,
        **config.params,
    }


async def measure_plc(protocol: str, polls: int) -> dict[str, float]:
    """The driver's and the raw library's poll figures for one protocol, in one run."""
    async with demo_plc(protocol, batch_units=10**9, units_per_s=1.0) as plc:
        config = parse_config(tomllib.loads(_AGENT + plc.section)).plcs[0]
        watch = _watch(config)
        driver = open_plc(config, watch)
        async with driver:
            rate, p99 = await _timed(polls, driver.poll)
        raw_rate, raw_p99 = await _RAW[protocol](config, polls)
    return {
        f"plc_{protocol}_polls_per_s": rate,
        f"plc_{protocol}_p99_ms": p99,
        f"plc_{protocol}_raw_polls_per_s": raw_rate,
        f"plc_{protocol}_raw_p99_ms": raw_p99,
        f"plc_{protocol}_x_raw": rate / raw_rate,
    }


ROWS = tuple(
    row
    for p in PROTOCOLS
    for row in (
        (f"plc_{p}_polls_per_s", f"PLC poll, {p} (driver, 6 values in one read)", "polls/s", ""),
        (f"plc_{p}_p99_ms", f"  {p} poll p99", "ms", ""),
        (f"plc_{p}_raw_polls_per_s", f"  baseline: the same read, raw {p} library", "polls/s", ""),
        (f"plc_{p}_raw_p99_ms", f"  raw {p} read p99", "ms", ""),
        (f"plc_{p}_x_raw", f"  {p} driver / raw", "x", ""),
    )
)
"""The figures' rows for `agent.cli.bench.render_table`: (key, label, unit, target)."""
