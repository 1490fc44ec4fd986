"""Modbus register addresses: the `TABLE:ADDRESS[:TYPE[:LENGTH]]` syntax, value codecs, read plans.

A `RegisterAddress` names one typed value in one of the four Modbus tables (coils, discrete
inputs, holding registers, input registers). It parses and prints the config syntax, knows how
many bits or 16-bit words it spans, and converts between Python values and the raw words/bits
on the wire. `plan_reads` coalesces many addresses into as few Modbus read requests as the
spec allows. `RegisterSpec` is the same type annotated for pydantic config models.

Rules:

- `coil` and `discrete` hold bits: type `bool` (the default) and nothing else.
- `holding` and `input` hold 16-bit words: `uint16` (the default), `int16`, `uint32`, `int32`,
  `float32` or `string:LENGTH`; never `bool`.
- 32-bit types use two words, high word first unless `word_order="little"`.
- `string:LENGTH` counts characters (bytes), two per register, first byte in the high half of
  each register, NUL-padded; decoded as UTF-8 with trailing NULs stripped.
- The whole value must fit in 0..65535, and in one read request (a string of at most 250).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

from drivers.base import AddressInfo, Value, ValueKind

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["RegisterAddress", "RegisterSpec", "Table", "Value", "ValueType", "plan_reads"]

WordOrder = Literal["big", "little"]

MAX_ADDRESS = 65535
MAX_READ_REGISTERS = 125  # Modbus spec limit for function codes 3 and 4
MAX_READ_BITS = 2000  # Modbus spec limit for function codes 1 and 2
MAX_STRING_LENGTH = 2 * MAX_READ_REGISTERS
MAX_WORD = 0xFFFF


class Table(StrEnum):
    """The four Modbus data tables."""

    COIL = "coil"
    DISCRETE = "discrete"
    HOLDING = "holding"
    INPUT = "input"

    @property
    def is_bits(self) -> bool:
        """Whether the table holds single bits (coils, discrete inputs) rather than words."""
        return self in (Table.COIL, Table.DISCRETE)


class ValueType(StrEnum):
    """How the bits or words at an address are interpreted."""

    BOOL = "bool"
    UINT16 = "uint16"
    INT16 = "int16"
    UINT32 = "uint32"
    INT32 = "int32"
    FLOAT32 = "float32"
    STRING = "string"


_NUMBER_FORMATS: dict[ValueType, str] = {
    ValueType.UINT16: "H",
    ValueType.INT16: "h",
    ValueType.UINT32: "I",
    ValueType.INT32: "i",
    ValueType.FLOAT32: "f",
}
_INTEGER_RANGES: dict[ValueType, tuple[int, int]] = {
    ValueType.UINT16: (0, 0xFFFF),
    ValueType.INT16: (-0x8000, 0x7FFF),
    ValueType.UINT32: (0, 0xFFFF_FFFF),
    ValueType.INT32: (-0x8000_0000, 0x7FFF_FFFF),
}
_SYNTAX = "TABLE:ADDRESS[:TYPE[:LENGTH]]"


@dataclass(frozen=True, slots=True)
class RegisterAddress:
    """One typed value in a Modbus table, e.g. `holding:100:uint32`."""

    table: Table
    address: int
    type: ValueType
    length: int | None = None

    def __post_init__(self) -> None:
        if self.table.is_bits and self.type is not ValueType.BOOL:
            msg = f"{self.table} addresses hold single bits: type must be bool, not {self.type}"
            raise ValueError(msg)
        if self.type is ValueType.STRING:
            if self.length is None:
                msg = f"string needs a length in characters: {self.table}:{self.address}:string:N"
                raise ValueError(msg)
            if not 1 <= self.length <= MAX_STRING_LENGTH:
                msg = f"string length must be 1..{MAX_STRING_LENGTH} characters, not {self.length}"
                raise ValueError(msg)
        elif self.length is not None:
            msg = f"only string takes a length, not {self.type}"
            raise ValueError(msg)
        if not 0 <= self.address <= MAX_ADDRESS:
            msg = f"address must be 0..{MAX_ADDRESS}, not {self.address}"
            raise ValueError(msg)
        if self.end - 1 > MAX_ADDRESS:
            msg = (
                f"{self.type} at {self.address} spans {self.width} registers and runs past "
                f"address {MAX_ADDRESS}"
            )
            raise ValueError(msg)

    @classmethod
    def parse(cls, text: str) -> RegisterAddress:
        """Parse `TABLE:ADDRESS[:TYPE[:LENGTH]]`; raise ValueError saying what is wrong."""
        parts = [p.strip().lower() for p in text.strip().split(":")]
        if len(parts) < 2 or len(parts) > 4:  # noqa: PLR2004 (the syntax has 2..4 parts)
            msg = f"register address {text!r} is not {_SYNTAX}, e.g. holding:100:uint32"
            raise ValueError(msg)
        try:
            table = Table(parts[0])
        except ValueError:
            choices = ", ".join(t.value for t in Table)
            msg = f"unknown table {parts[0]!r} in {text!r}; one of {choices}"
            raise ValueError(msg) from None
        address = _parse_int(parts[1], "address", text)
        if len(parts) >= 3:  # noqa: PLR2004
            try:
                value_type = ValueType(parts[2])
            except ValueError:
                choices = ", ".join(t.value for t in ValueType)
                msg = f"unknown type {parts[2]!r} in {text!r}; one of {choices}"
                raise ValueError(msg) from None
        else:
            value_type = ValueType.BOOL if table.is_bits else ValueType.UINT16
        length = _parse_int(parts[3], "length", text) if len(parts) == 4 else None  # noqa: PLR2004
        try:
            return cls(table, address, value_type, length)
        except ValueError as exc:
            msg = f"register address {text!r}: {exc}"
            raise ValueError(msg) from None

    @property
    def info(self) -> AddressInfo:
        """What the address holds (the protocol-neutral view the agent decides by)."""
        writable = self.table in (Table.COIL, Table.HOLDING)
        name = str(self.type)
        match self.type:
            case ValueType.BOOL:
                return AddressInfo(ValueKind.BOOL, writable, name)
            case ValueType.FLOAT32:
                return AddressInfo(ValueKind.FLOAT, writable, name)
            case ValueType.STRING:
                return AddressInfo(ValueKind.STRING, writable, name, length=self.length)
            case _:
                bits = 16 if self.type in (ValueType.UINT16, ValueType.INT16) else 32
                signed = self.type in (ValueType.INT16, ValueType.INT32)
                return AddressInfo(ValueKind.INTEGER, writable, name, bits=bits, signed=signed)

    @property
    def width(self) -> int:
        """How many bits (coil/discrete) or 16-bit words (holding/input) the value spans."""
        if self.type is ValueType.STRING:
            assert self.length is not None
            return math.ceil(self.length / 2)
        if self.type in (ValueType.UINT32, ValueType.INT32, ValueType.FLOAT32):
            return 2
        return 1

    @property
    def end(self) -> int:
        """The first address after this value."""
        return self.address + self.width

    def decode(
        self, words_or_bits: Sequence[int] | Sequence[bool], *, word_order: WordOrder = "big"
    ) -> Value:
        """Turn the raw bits or words read at this address into a Python value."""
        if len(words_or_bits) != self.width:
            msg = f"{self} needs {self.width} values, got {len(words_or_bits)}"
            raise ValueError(msg)
        if self.type is ValueType.BOOL:
            return bool(words_or_bits[0])
        words = [int(w) for w in words_or_bits]
        if any(not 0 <= w <= MAX_WORD for w in words):
            msg = f"{self}: register values must be 0..65535, got {words}"
            raise ValueError(msg)
        if self.type is ValueType.STRING:
            raw = b"".join(w.to_bytes(2, "big") for w in words)
            return raw.rstrip(b"\x00").decode("utf-8", errors="replace")
        if word_order == "little":
            words.reverse()
        raw = b"".join(w.to_bytes(2, "big") for w in words)
        value = struct.unpack(">" + _NUMBER_FORMATS[self.type], raw)[0]
        return float(value) if self.type is ValueType.FLOAT32 else int(value)

    def encode(self, value: Value, *, word_order: WordOrder = "big") -> list[int] | list[bool]:
        """Turn a Python value into the bits or words to write at this address."""
        if self.type is ValueType.BOOL:
            if not isinstance(value, bool) and value not in (0, 1):
                msg = f"{self} takes a bool, not {value!r}"
                raise TypeError(msg)
            # a bit, or a whole register holding 0 or 1 (any other value reads as true)
            return [bool(value)] if self.table.is_bits else [int(bool(value))]
        if self.type is ValueType.STRING:
            return self._encode_string(value)
        if isinstance(value, bool | str):
            msg = f"{self} takes a number, not {value!r}"
            raise TypeError(msg)
        if self.type is ValueType.FLOAT32:
            raw = struct.pack(">f", float(value))
        else:
            if not isinstance(value, int):
                msg = f"{self} takes an integer, not {value!r}"
                raise TypeError(msg)
            low, high = _INTEGER_RANGES[self.type]
            if not low <= value <= high:
                msg = f"{value} is out of range for {self.type} ({low}..{high})"
                raise ValueError(msg)
            raw = struct.pack(">" + _NUMBER_FORMATS[self.type], value)
        words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
        if word_order == "little":
            words.reverse()
        return words

    def _encode_string(self, value: Value) -> list[int]:
        if not isinstance(value, str):
            msg = f"{self} takes a str, not {value!r}"
            raise TypeError(msg)
        raw = value.encode("utf-8")
        assert self.length is not None
        if len(raw) > self.length:
            msg = f"{len(raw)} bytes do not fit in {self} ({self.length} characters)"
            raise ValueError(msg)
        raw = raw.ljust(2 * self.width, b"\x00")
        return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]

    def __str__(self) -> str:
        """Return the canonical text form, leaving out the type when it is the default."""
        default = ValueType.BOOL if self.table.is_bits else ValueType.UINT16
        text = f"{self.table}:{self.address}"
        if self.type is not default:
            text += f":{self.type}"
        if self.length is not None:
            text += f":{self.length}"
        return text


def _parse_int(part: str, what: str, text: str) -> int:
    if not part.isdigit():
        msg = f"{what} {part!r} in {text!r} is not a non-negative decimal number"
        raise ValueError(msg)
    return int(part)


def _validate_spec(value: Any) -> RegisterAddress:
    if isinstance(value, RegisterAddress):
        return value
    if not isinstance(value, str):
        msg = f"a register address is a string like 'holding:100:uint32', not {value!r}"
        raise ValueError(msg)  # noqa: TRY004 (pydantic reports ValueError, not TypeError)
    return RegisterAddress.parse(value)


RegisterSpec = Annotated[
    RegisterAddress,
    PlainValidator(_validate_spec),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^(coil|discrete|holding|input):\d+(:\w+)*$"}),
]
"""A `RegisterAddress` field in a pydantic model, written as text in config files."""


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One Modbus read request: `count` bits or words of `table` starting at `start`."""

    table: Table
    start: int
    count: int

    @property
    def end(self) -> int:
        """The first address after the block."""
        return self.start + self.count

    def covers(self, address: RegisterAddress) -> bool:
        """Whether the whole value at `address` is inside this block."""
        return (
            address.table is self.table
            and self.start <= address.address
            and address.end <= self.end
        )

    def values_for(
        self, address: RegisterAddress, values: Sequence[int] | Sequence[bool]
    ) -> Sequence[int] | Sequence[bool]:
        """Return the part of this block's read result that belongs to `address`."""
        offset = address.address - self.start
        return values[offset : offset + address.width]


def plan_reads(
    addresses: Iterable[RegisterAddress], *, max_gap_words: int = 8, max_gap_bits: int = 64
) -> list[ReadBlock]:
    """Coalesce addresses into as few read requests as the Modbus limits allow.

    Neighbouring addresses of one table share a request when the unused gap between them is
    at most `max_gap_words` registers (or `max_gap_bits` bits) and the request stays within
    125 registers / 2000 bits. Every address is covered by exactly one block.
    """
    by_table: dict[Table, list[RegisterAddress]] = {}
    for address in addresses:
        by_table.setdefault(address.table, []).append(address)
    blocks: list[ReadBlock] = []
    for table in Table:
        members = sorted(by_table.get(table, []), key=lambda a: (a.address, a.end))
        if not members:
            continue
        limit = MAX_READ_BITS if table.is_bits else MAX_READ_REGISTERS
        max_gap = max_gap_bits if table.is_bits else max_gap_words
        start, end = members[0].address, members[0].end
        for address in members[1:]:
            new_end = max(end, address.end)
            if address.address - end <= max_gap and new_end - start <= limit:
                end = new_end
            else:
                blocks.append(ReadBlock(table, start, end - start))
                start, end = address.address, address.end
        blocks.append(ReadBlock(table, start, end - start))
    return blocks
