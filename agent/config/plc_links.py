"""Which driver a `[[plcs]]` entry opens: Modbus TCP/RTU, OPC UA, S7 or EtherNet/IP.

`open_plc` builds the driver of a PLC's `protocol` from its config (the config holds the
driver's own settings), watching the named addresses given. The line (`agent.batches.line`),
`lineside doctor` and `lineside bench` all build their links here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.config.plcs import PlcEnipConfig, PlcOpcUaConfig, PlcS7Config
from drivers.plcs.enip import EnipPlc
from drivers.plcs.modbus import ModbusPlc
from drivers.plcs.opcua import OpcUaPlc
from drivers.plcs.s7 import S7Plc

if TYPE_CHECKING:
    from collections.abc import Mapping

    from agent.config.plcs import AnyPlcConfig
    from drivers.base import Plc

PROTOCOL_NAMES = {
    "modbus-tcp": "Modbus TCP",
    "modbus-rtu": "Modbus RTU",
    "opcua": "OPC UA",
    "s7": "S7",
    "enip": "EtherNet/IP",
}


def open_plc(
    config: AnyPlcConfig,
    watch: Mapping[str, Any],
    *,
    backoff_base_s: float = 0.2,
    backoff_cap_s: float = 10.0,
) -> Plc[Any]:
    """The driver of `config.protocol` for this PLC, watching `watch` (not yet connected)."""
    backoff = {"backoff_base_s": backoff_base_s, "backoff_cap_s": backoff_cap_s}
    if isinstance(config, PlcOpcUaConfig):
        return OpcUaPlc(config.id, config, watch=watch, **backoff)
    if isinstance(config, PlcS7Config):
        return S7Plc(config.id, config, watch=watch, **backoff)
    if isinstance(config, PlcEnipConfig):
        return EnipPlc(config.id, config, watch=watch, **backoff)
    return ModbusPlc(config.id, config, watch=watch, **backoff)
