"""`[[plcs]]`: each line PLC's link (the driver's settings), batch signals and parameters.

A PLC with `[plcs.batch]` completes batches (`agent.batches`): it is a line, which may have
its own product settings in `[plcs.line]` (`agent.config.line`). One without is only watched
(health, parameters on the status page). The link settings are the driver's (Modbus TCP/RTU,
OPC UA, S7, EtherNet/IP), joined by `protocol` into `PlcConfig`; the signals and parameters are
addresses in that protocol's syntax (`coil:0`, `ns=2;s=Line.BatchDone`, `DB10.DBX0.0`,
`BatchDone`).

What an address holds is checked here when its text says it (Modbus, S7): the ack must be a
writable bool, the code block a writable string, the trigger a bool or an integer. OPC UA nodes
and Logix tags say it only when the PLC is asked; the line checks them at connect
(`agent.batches.line`).
"""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from agent.config.fields import ID_PATTERN, Section
from agent.config.line import LineProduct  # noqa: TC001 (pydantic resolves it at runtime)
from drivers.base import ValueKind
from drivers.plcs.enip import EnipSettings, TagSpec
from drivers.plcs.modbus import ModbusRtuSettings, ModbusTcpSettings
from drivers.plcs.opcua import NodeSpec, OpcUaSettings
from drivers.plcs.registers import RegisterSpec
from drivers.plcs.s7 import S7Settings
from drivers.plcs.s7_address import S7Spec

A = TypeVar("A")


def signal_problem(role: str, info: object) -> str | None:
    """What is wrong with an address of `info` (an `AddressInfo`) for signal `role`, if anything.

    Shared by the config (addresses that know their type) and the line at connect (OPC UA
    nodes and Logix tags, whose type the PLC reports).
    """
    kind = getattr(info, "kind", None)
    writable = bool(getattr(info, "writable", False))
    type_name = str(getattr(info, "type_name", "?")) + ("" if writable else ", read-only")
    match role:
        case "trigger" if kind not in (ValueKind.BOOL, ValueKind.INTEGER):
            return f"is {type_name}: a trigger is a bool (handshake, edge) or an integer (counter)"
        case "ack" if kind is not ValueKind.BOOL or not writable:
            return f"is {type_name}: the ack must be a writable bool (the agent sets and clears it)"
        case "write_code_to" if kind is not ValueKind.STRING or not writable:
            return f"is {type_name}: the trace code goes to a writable string"
        case "quantity" | "batch_id" if kind not in (ValueKind.INTEGER, ValueKind.FLOAT):
            return f"is {type_name}: {role} must be a number"
    return None


class BatchSignals(Section, Generic[A]):
    """The PLC signals of batch completion, as addresses of the PLC's protocol."""

    trigger: A = Field(
        description="A bool: handshake with ack, else rising edge; an integer counts batches."
    )
    quantity: A | None = Field(default=None, description="Produced quantity of the batch.")
    ack: A | None = Field(
        default=None, description="Bool the agent sets to acknowledge the trigger (handshake)."
    )
    write_code_to: A | None = Field(
        default=None, description="String the trace code is written to."
    )
    batch_id: A | None = Field(
        default=None,
        description="A value naming the batch (e.g. the PLC's batch number): a request found "
        "pending after an agent restart is the stamped batch only if its id matches.",
    )

    @field_validator("trigger", "quantity", "ack", "write_code_to", "batch_id")
    @classmethod
    def _fits_its_role(cls, value: A | None, info: ValidationInfo) -> A | None:
        known = getattr(value, "info", None)  # None: the PLC says at connect
        role = info.field_name or ""
        if known is not None and (problem := signal_problem(role, known)) is not None:
            raise ValueError(f"{value} {problem}")
        return value


class _PlcFields(BaseModel, Generic[A]):
    id: str = Field(pattern=ID_PATTERN, description="PLC id, e.g. filler.")
    batch: BatchSignals[A] | None = Field(
        default=None, description="Batch completion signals; absent for a PLC only watched."
    )
    params: dict[str, A] = Field(
        default_factory=dict, description="Process parameters snapshotted into batch.completed."
    )
    # Several lines on one node: a line PLC's own product settings ([line] fills the gaps).
    line: LineProduct | None = Field(
        default=None,
        description="This line's own product settings; missing keys fall back to [line] "
        "(needs a [plcs.batch] section).",
    )


class PlcTcpConfig(ModbusTcpSettings, _PlcFields[RegisterSpec]):
    """A PLC over Modbus TCP."""


class PlcRtuConfig(ModbusRtuSettings, _PlcFields[RegisterSpec]):
    """A PLC over Modbus RTU (serial)."""


class PlcOpcUaConfig(OpcUaSettings, _PlcFields[NodeSpec]):
    """A PLC over OPC UA (nodes by node id)."""


class PlcS7Config(S7Settings, _PlcFields[S7Spec]):
    """A Siemens S7 CPU (data-block addresses)."""


class PlcEnipConfig(EnipSettings, _PlcFields[TagSpec]):
    """An Allen-Bradley Logix PLC over EtherNet/IP (tags by name)."""


AnyPlcConfig = PlcTcpConfig | PlcRtuConfig | PlcOpcUaConfig | PlcS7Config | PlcEnipConfig
"""Any line PLC's config (for type hints)."""

PlcConfig = Annotated[AnyPlcConfig, Field(discriminator="protocol")]
"""A line PLC, by its `protocol`."""
