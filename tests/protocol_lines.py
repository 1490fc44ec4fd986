"""The filling line on OPC UA, S7 or EtherNet/IP for agent tests: the simulator and its config.

`line_on(protocol, ...)` starts that protocol's simulator (the library's own server running
`drivers.simulators.line_program`) and yields it with the `[[plcs]]` section that points an
agent at it, in the same shape as the Modbus line's (`test_e2e_batches.plc_section`).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from drivers.simulators.enip_plc import EnipLineSimulator, tag
from drivers.simulators.opcua_plc import OpcUaLineSimulator, node_id
from drivers.simulators.s7_plc import ADDRESSES, S7LineSimulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from drivers.simulators.line_program import SimulatedPlc

PROTOCOLS = ("opcua", "s7", "enip")
GTIN = "09501101530003"


def address(protocol: str, signal: str) -> str:
    """A signal's address in the protocol's config syntax."""
    match protocol:
        case "opcua":
            return node_id(signal)
        case "s7":
            return str(ADDRESSES[signal])
        case _:
            return tag(signal)


def simulator(
    protocol: str,
    *,
    handshake: bool,
    pulse_ms: int,
    auto: bool = False,
    batch_units: int = 120,
    units_per_s: float = 20.0,
) -> SimulatedPlc:
    """The protocol's simulator of the filling line (completing batches only when told, unless
    `auto`: then every `batch_units` units at `units_per_s`)."""
    kinds: dict[str, type[OpcUaLineSimulator | S7LineSimulator | EnipLineSimulator]] = {
        "opcua": OpcUaLineSimulator,
        "s7": S7LineSimulator,
        "enip": EnipLineSimulator,
    }
    return kinds[protocol](
        auto=auto,
        handshake=handshake,
        pulse_ms=pulse_ms,
        seed=3,
        batch_units=batch_units,
        units_per_s=units_per_s,
    )


def where(protocol: str, sim: SimulatedPlc) -> str:
    """The link settings of a `[[plcs]]` entry for the running simulator."""
    if isinstance(sim, OpcUaLineSimulator):
        return f'protocol = "opcua"\nendpoint = "{sim.url}"'
    assert isinstance(sim, S7LineSimulator | EnipLineSimulator)
    return f'protocol = "{protocol}"\nhost = "{sim.host}"\nport = {sim.port}'


def plc_section(
    protocol: str,
    sim: SimulatedPlc,
    *,
    mode: str = "handshake",
    poll_ms: int = 20,
    params: dict[str, str] | None = None,
) -> str:
    """The `[line]` and `[[plcs]]` config of the simulated line in trigger mode `mode`."""
    trigger = address(protocol, "counter" if mode == "counter" else "trigger")
    signals = [f'trigger = "{trigger}"', f'quantity = "{address(protocol, "quantity")}"']
    if mode == "handshake":
        signals += [
            f'ack = "{address(protocol, "ack")}"',
            f'write_code_to = "{address(protocol, "code")}"',
            f'batch_id = "{address(protocol, "batch_id")}"',
        ]
    parameters = {
        "fill_temp_c": address(protocol, "fill_temp_c"),
        "line_speed": address(protocol, "line_speed"),
        **(params or {}),
    }
    return "\n".join(
        [
            "[line]",
            f'gtin = "{GTIN}"',
            "[[plcs]]",
            'id = "filler"',
            where(protocol, sim),
            f"poll_ms = {poll_ms}",
            "timeout_ms = 500",
            "[plcs.batch]",
            *signals,
            "[plcs.params]",
            *(f'{name} = "{text}"' for name, text in parameters.items()),
            "",
        ]
    )


@contextlib.asynccontextmanager
async def line_on(
    protocol: str, *, handshake: bool = True, pulse_ms: int = 500
) -> AsyncIterator[SimulatedPlc]:
    """The protocol's simulated line, running until the block ends."""
    async with simulator(protocol, handshake=handshake, pulse_ms=pulse_ms) as sim:
        yield sim
