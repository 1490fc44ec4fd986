"""OPC UA nodes as the agent sees them: node id addresses, and what a node holds.

`NodeAddress` is a node id as asyncua parses it (`ns=2;s=Capper.BatchDone`, `ns=2;i=1001`);
`NodeSpec` is the same for pydantic config models. `node_type` turns a node's DataType,
ValueRank and UserAccessLevel into an `AddressInfo` (or refuses the node by name), and
`convert`/`coerce` check values read and written against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from asyncua import ua
from pydantic import PlainSerializer, PlainValidator, WithJsonSchema
from pydantic_core import core_schema

from drivers.base import AddressInfo, AddressRejected, Value, ValueKind
from drivers.plcs.opcua_errors import status_text

# DataType ids of ns=0 → (kind, bits, signed); the VariantType has the same number.
_DATA_TYPES: dict[int, tuple[ValueKind, int | None, bool]] = {
    1: (ValueKind.BOOL, None, False),
    2: (ValueKind.INTEGER, 8, True),
    3: (ValueKind.INTEGER, 8, False),
    4: (ValueKind.INTEGER, 16, True),
    5: (ValueKind.INTEGER, 16, False),
    6: (ValueKind.INTEGER, 32, True),
    7: (ValueKind.INTEGER, 32, False),
    8: (ValueKind.INTEGER, 64, True),
    9: (ValueKind.INTEGER, 64, False),
    10: (ValueKind.FLOAT, None, False),
    11: (ValueKind.FLOAT, None, False),
    12: (ValueKind.STRING, None, False),
}
_SCALAR = -1
_CURRENT_WRITE = 0x02


@dataclass(frozen=True, slots=True)
class NodeAddress:
    """One OPC UA node, by its node id text as asyncua parses it (`ns=2;s=Capper.BatchDone`)."""

    node_id: ua.NodeId
    text: str

    @classmethod
    def parse(cls, text: str) -> NodeAddress:
        """Parse a node id (`ns=2;s=…`, `ns=2;i=1001`, `i=2258`); raise ValueError if it is none."""
        stripped = text.strip()
        try:
            node_id = ua.NodeId.from_string(stripped)
        except (ValueError, ua.UaError, IndexError) as exc:
            msg = f"{text!r} is not an OPC UA node id like 'ns=2;s=Line.BatchDone' ({exc})"
            raise ValueError(msg) from None
        return cls(node_id, stripped)

    @property
    def info(self) -> AddressInfo | None:
        """Unknown until the server says (`OpcUaPlc.describe`)."""
        return None

    def __str__(self) -> str:
        return self.text

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        # pydantic cannot build a schema from the asyncua NodeId field: validate as text.
        return core_schema.no_info_plain_validator_function(
            _validate_node, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )


def _validate_node(value: Any) -> NodeAddress:
    if isinstance(value, NodeAddress):
        return value
    if not isinstance(value, str):
        msg = f"an OPC UA node id is a string like 'ns=2;s=Line.BatchDone', not {value!r}"
        raise ValueError(msg)  # noqa: TRY004 (pydantic reports ValueError)
    return NodeAddress.parse(value)


NodeSpec = Annotated[
    NodeAddress,
    PlainValidator(_validate_node),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^(ns=\d+;)?[isgb]=.+$"}),
]
"""A `NodeAddress` field in a pydantic model, written as the node id text in config files."""


@dataclass(frozen=True, slots=True)
class NodeType:
    """What a node holds, and the VariantType its value is written in."""

    info: AddressInfo
    variant: ua.VariantType


def node_type(
    text: str,
    data_type: ua.DataValue,
    rank: ua.DataValue,
    access: ua.DataValue,
    value: ua.DataValue,
) -> NodeType:
    """Turn the attributes of one node into what the agent needs, or refuse it by name."""
    for result in (data_type, rank, access):
        code = result.StatusCode.value if result.StatusCode is not None else 0
        if not ua.StatusCode(code).is_good():
            raise AddressRejected(f"node {text}: {status_text(code)}", address=text)
    type_id = data_type.Value.Value if data_type.Value is not None else None
    number = type_id.Identifier if isinstance(type_id, ua.NodeId) else None
    if not (isinstance(type_id, ua.NodeId) and type_id.NamespaceIndex == 0):
        number = None
    if number not in _DATA_TYPES and value.Value is not None:
        number = int(value.Value.VariantType.value)  # an abstract DataType: the value's own
    if not isinstance(number, int) or number not in _DATA_TYPES:
        message = (
            f"node {text} has DataType {type_id}; only Boolean, integer, Float, Double and "
            "String nodes can be used"
        )
        raise AddressRejected(message, address=text)
    value_rank = rank.Value.Value if rank.Value is not None else None
    if value_rank not in (_SCALAR, None):
        message = f"node {text} is an array (ValueRank {value_rank}); use a scalar node"
        raise AddressRejected(message, address=text)
    level = access.Value.Value if access.Value is not None else 0
    kind, bits, signed = _DATA_TYPES[number]
    variant = ua.VariantType(number)
    info = AddressInfo(
        kind,
        writable=bool(int(level or 0) & _CURRENT_WRITE),
        type_name=variant.name,
        bits=bits,
        signed=signed,
    )
    return NodeType(info, variant)


def convert(kind: ValueKind, raw: object) -> Value:
    """A value read from a node, checked against the node's kind."""
    match kind:
        case ValueKind.BOOL if isinstance(raw, bool):
            return raw
        case ValueKind.INTEGER if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        case ValueKind.FLOAT if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        case ValueKind.STRING if isinstance(raw, str):
            return raw
        case ValueKind.STRING if raw is None:
            return ""  # a null String
    raise TypeError(f"the value {raw!r:.40} is not a {kind}")


def coerce(info: AddressInfo, value: Value, address: str) -> Value:
    """Check a value against the node's kind before it goes on the wire."""
    ok = {
        ValueKind.BOOL: isinstance(value, bool),
        ValueKind.INTEGER: isinstance(value, int) and not isinstance(value, bool),
        ValueKind.FLOAT: isinstance(value, int | float) and not isinstance(value, bool),
        ValueKind.STRING: isinstance(value, str),
    }[info.kind]
    if not ok:
        raise TypeError(f"{address} takes a {info.type_name}, not {value!r}")
    if info.kind is ValueKind.INTEGER and info.bits is not None:
        assert isinstance(value, int)
        low = -(1 << (info.bits - 1)) if info.signed else 0
        high = (1 << (info.bits - 1)) - 1 if info.signed else (1 << info.bits) - 1
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range for {address} ({info.type_name})")
    return float(value) if info.kind is ValueKind.FLOAT else value
