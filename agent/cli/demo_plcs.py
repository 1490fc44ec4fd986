"""The demo line's PLC, on the protocol `lineside demo --plc` names: its simulator and config.

`demo_plc(protocol, ...)` runs the filling line on that protocol's own server (pymodbus for
`modbus`, asyncua for `opcua`, python-snap7 for `s7`, cpppo for `enip`; `drivers.simulators`)
and gives the `[[plcs]]` section that points the demo agent at it, with a handshake trigger,
the code written back, the quantity and two process parameters. cpppo (the `demo` extra) is
imported only for `enip`: `enip_available()` says whether it is installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.simulators.modbus_plc import FillingLineSimulator
from drivers.simulators.opcua_plc import OpcUaLineSimulator, node_id
from drivers.simulators.s7_plc import ADDRESSES, S7LineSimulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from drivers.simulators.enip_plc import EnipLineSimulator

PROTOCOLS = ("modbus", "opcua", "s7", "enip")
_MODBUS = {
    "trigger": "coil:0",
    "ack": "coil:1",
    "quantity": "holding:100:uint32",
    "code": "holding:200:string:64",
    "fill_temp_c": "holding:110:float32",
    "line_speed": "holding:112:uint16",
}


def enip_available() -> bool:
    """Whether the Logix simulator's library (cpppo, the `demo` extra) is installed."""
    return importlib.util.find_spec("cpppo") is not None


@dataclass(frozen=True, slots=True)
class DemoPlc:
    """The running simulator's `[[plcs]]` section and where it listens (for the banner)."""

    section: str
    where: str


def _section(link: str, address: dict[str, str]) -> str:
    return f"""[[plcs]]
id = "filler"
{link}
poll_ms = 100

[plcs.batch]
trigger = "{address["trigger"]}"
quantity = "{address["quantity"]}"
ack = "{address["ack"]}"
write_code_to = "{address["code"]}"

[plcs.params]
fill_temp_c = "{address["fill_temp_c"]}"
line_speed = "{address["line_speed"]}"
"""


def _addresses(protocol: str) -> dict[str, str]:
    signals = ("trigger", "ack", "quantity", "code", "fill_temp_c", "line_speed")
    match protocol:
        case "opcua":
            return {s: node_id(s) for s in signals}
        case "s7":
            return {s: str(ADDRESSES[s]) for s in signals}
        case "enip":
            from drivers.simulators.enip_plc import tag  # noqa: PLC0415 (cpppo: the demo extra)

            return {s: tag(s) for s in signals}
        case _:
            return dict(_MODBUS)


@contextlib.asynccontextmanager
async def demo_plc(
    protocol: str, *, batch_units: int, units_per_s: float
) -> AsyncIterator[DemoPlc]:
    """The filling line's PLC on `protocol`, running until the block ends."""
    address = _addresses(protocol)
    sim: OpcUaLineSimulator | S7LineSimulator | EnipLineSimulator
    if protocol == "opcua":
        async with OpcUaLineSimulator(batch_units=batch_units, units_per_s=units_per_s) as sim:
            link = f'protocol = "opcua"\nendpoint = "{sim.url}"'
            yield DemoPlc(_section(link, address), f"OPC UA {sim.url}")
    elif protocol in ("s7", "enip"):
        kind: type[S7LineSimulator | EnipLineSimulator] = S7LineSimulator
        if protocol == "enip":
            from drivers.simulators.enip_plc import EnipLineSimulator  # noqa: PLC0415

            kind = EnipLineSimulator
        async with kind(batch_units=batch_units, units_per_s=units_per_s) as sim:
            link = f'protocol = "{protocol}"\nhost = "{sim.host}"\nport = {sim.port}'
            name = "S7" if protocol == "s7" else "EtherNet/IP"
            yield DemoPlc(_section(link, address), f"{name} {sim.host}:{sim.port}")
    else:
        async with FillingLineSimulator(
            port=0, batch_units=batch_units, units_per_s=units_per_s
        ) as modbus:
            link = f'protocol = "modbus-tcp"\nhost = "127.0.0.1"\nport = {modbus.port}'
            yield DemoPlc(_section(link, address), f"Modbus 127.0.0.1:{modbus.port}")
