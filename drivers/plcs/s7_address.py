"""S7 data-block addresses: `DB<n>.DBX<byte>.<bit>` and `DB<n>.DB{B,W,D}<byte>[:type[:len]]`.

An `S7Address` names one typed value in a data block: a bit (`DB10.DBX0.1`), or a value that
starts at a byte (`DB10.DBD2:dint`, `DB10.DBB100:string:64`). It parses and prints the config
syntax, knows its byte span, and converts between Python values and the bytes on the wire
(big-endian, as S7 CPUs store them). `S7Spec` is the same type for pydantic config models.

Types and where they sit (the width letter and the type must agree)::

    DBX<byte>.<bit>    bool            one bit (0..7)
    DBB<byte>          byte (default), string:LEN (an S7 STRING: max-length byte,
                                       actual-length byte, then LEN characters)
    DBW<byte>          word (default, unsigned), int (signed)
    DBD<byte>          dword (default, unsigned), dint (signed), real (IEEE 754)

Strings are single-byte characters (Latin-1, as S7 STRING); LEN is 1..254.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

from drivers.base import AddressInfo, Value, ValueKind

MAX_DB = 65535
MAX_OFFSET = 65535
MAX_STRING = 254
_SYNTAX = "DB<n>.DBX<byte>.<bit> or DB<n>.DB{B,W,D}<byte>[:type[:length]]"
_ADDRESS = re.compile(r"^DB(?P<db>\d+)\.(?P<area>[A-Z]*)(?P<offset>\d+)(?:\.(?P<bit>\d+))?$")


class S7Type(StrEnum):
    """How the bytes at an S7 address are interpreted."""

    BOOL = "bool"
    BYTE = "byte"
    INT = "int"
    WORD = "word"
    DINT = "dint"
    DWORD = "dword"
    REAL = "real"
    STRING = "string"


# width letter → (default type, allowed types)
_AREAS: dict[str, tuple[S7Type, tuple[S7Type, ...]]] = {
    "DBX": (S7Type.BOOL, (S7Type.BOOL,)),
    "DBB": (S7Type.BYTE, (S7Type.BYTE, S7Type.STRING)),
    "DBW": (S7Type.WORD, (S7Type.WORD, S7Type.INT)),
    "DBD": (S7Type.DWORD, (S7Type.DWORD, S7Type.DINT, S7Type.REAL)),
}
_FORMATS = {
    S7Type.BYTE: ">B",
    S7Type.INT: ">h",
    S7Type.WORD: ">H",
    S7Type.DINT: ">i",
    S7Type.DWORD: ">I",
    S7Type.REAL: ">f",
}
_INTEGERS = {  # type → (bits, signed)
    S7Type.BYTE: (8, False),
    S7Type.INT: (16, True),
    S7Type.WORD: (16, False),
    S7Type.DINT: (32, True),
    S7Type.DWORD: (32, False),
}


@dataclass(frozen=True, slots=True)
class S7Address:
    """One typed value in an S7 data block, e.g. `DB10.DBD2:dint`."""

    db: int
    offset: int
    type: S7Type
    bit: int | None = None
    length: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.db <= MAX_DB:
            raise ValueError(f"DB number must be 1..{MAX_DB}, not {self.db}")
        if (self.type is S7Type.BOOL) != (self.bit is not None):
            raise ValueError("a bool is one bit: DB<n>.DBX<byte>.<bit>, and only a bool has a bit")
        if self.bit is not None and not 0 <= self.bit <= 7:  # noqa: PLR2004 (bits of a byte)
            raise ValueError(f"bit must be 0..7, not {self.bit}")
        if self.type is S7Type.STRING:
            if self.length is None or not 1 <= self.length <= MAX_STRING:
                raise ValueError(f"string needs a length 1..{MAX_STRING}: DB<n>.DBB<byte>:string:N")
        elif self.length is not None:
            raise ValueError(f"only string takes a length, not {self.type}")
        if self.offset + self.size - 1 > MAX_OFFSET:
            raise ValueError(f"byte {self.offset} + {self.size} runs past {MAX_OFFSET}")

    @classmethod
    def parse(cls, text: str) -> S7Address:
        """Parse the config syntax; raise ValueError saying what is wrong."""
        parts = text.strip().split(":")
        if len(parts) > 3 or not parts[0]:  # noqa: PLR2004 (address, type, length)
            raise ValueError(f"S7 address {text!r} is not {_SYNTAX}")
        match = _ADDRESS.match(parts[0].strip().upper())
        if match is None:
            raise ValueError(f"S7 address {text!r} is not {_SYNTAX}, e.g. DB10.DBX0.0")
        area = match["area"]
        if area not in _AREAS:
            token = f"{area}{match['offset']}"
            raise ValueError(f"no such S7 area {token!r} in {text!r}; use DBX, DBB, DBW or DBD")
        value_type = _type_of(area, parts[1] if len(parts) >= 2 else None, text)  # noqa: PLR2004
        bit = int(match["bit"]) if match["bit"] is not None else None
        if (area == "DBX") != (bit is not None):
            raise ValueError(
                f"{text!r}: a bit address is DBX<byte>.<bit>, other widths take no bit"
            )
        length = None
        if len(parts) == 3:  # noqa: PLR2004
            if not parts[2].strip().isdigit():
                raise ValueError(f"length {parts[2]!r} in {text!r} is not a number")
            length = int(parts[2])
        try:
            return cls(int(match["db"]), int(match["offset"]), value_type, bit, length)
        except ValueError as exc:
            raise ValueError(f"S7 address {text!r}: {exc}") from None

    @property
    def size(self) -> int:
        """How many bytes the value spans (a bit: its byte; a string: 2 + length)."""
        if self.type is S7Type.STRING:
            assert self.length is not None
            return 2 + self.length
        if self.type in (S7Type.BOOL, S7Type.BYTE):
            return 1
        return struct.calcsize(_FORMATS[self.type])

    @property
    def end(self) -> int:
        """The first byte after the value."""
        return self.offset + self.size

    @property
    def info(self) -> AddressInfo:
        """What the address holds; a data block can always be written (protection aside)."""
        name = str(self.type)
        match self.type:
            case S7Type.BOOL:
                return AddressInfo(ValueKind.BOOL, writable=True, type_name=name)
            case S7Type.REAL:
                return AddressInfo(ValueKind.FLOAT, writable=True, type_name=name)
            case S7Type.STRING:
                return AddressInfo(
                    ValueKind.STRING, writable=True, type_name=name, length=self.length
                )
            case _:
                bits, signed = _INTEGERS[self.type]
                return AddressInfo(
                    ValueKind.INTEGER, writable=True, type_name=name, bits=bits, signed=signed
                )

    def decode(self, data: bytes) -> Value:
        """Turn the bytes read at this address (exactly `size` of them) into a Python value."""
        if len(data) != self.size:
            raise ValueError(f"{self} needs {self.size} bytes, got {len(data)}")
        if self.type is S7Type.BOOL:
            assert self.bit is not None
            return bool(data[0] >> self.bit & 1)
        if self.type is S7Type.STRING:
            assert self.length is not None
            actual = min(data[1], data[0] or self.length, self.length)  # untrusted header
            return data[2 : 2 + actual].decode("latin-1")
        value = struct.unpack(_FORMATS[self.type], data)[0]
        return float(value) if self.type is S7Type.REAL else int(value)

    def encode(self, value: Value) -> bytes:
        """The bytes to write at `offset` (a bool: one byte, 0 or 1, for a BIT write)."""
        if self.type is S7Type.BOOL:
            if not isinstance(value, bool) and value not in (0, 1):
                raise TypeError(f"{self} takes a bool, not {value!r}")
            return b"\x01" if value else b"\x00"
        if self.type is S7Type.STRING:
            return _encode_string(self, value)
        if isinstance(value, bool | str):
            raise TypeError(f"{self} takes a number, not {value!r}")
        if self.type is S7Type.REAL:
            return struct.pack(">f", float(value))
        if not isinstance(value, int):
            raise TypeError(f"{self} takes an integer, not {value!r}")
        try:
            return struct.pack(_FORMATS[self.type], value)
        except struct.error:
            raise ValueError(f"{value} is out of range for {self.type} ({self})") from None

    def __str__(self) -> str:
        """The canonical text form, leaving out the type when it is the width's default."""
        if self.type is S7Type.BOOL:
            return f"DB{self.db}.DBX{self.offset}.{self.bit}"
        letter = {1: "B", 2: "W", 4: "D"}[1 if self.type is S7Type.STRING else self.size]
        text = f"DB{self.db}.DB{letter}{self.offset}"
        if self.type is not _AREAS[f"DB{letter}"][0]:
            text += f":{self.type}"
        if self.length is not None:
            text += f":{self.length}"
        return text


def _type_of(area: str, name: str | None, text: str) -> S7Type:
    default, allowed = _AREAS[area]
    if name is None:
        return default
    try:
        value_type = S7Type(name.strip().lower())
    except ValueError:
        choices = ", ".join(t.value for t in S7Type)
        raise ValueError(f"unknown S7 type {name!r} in {text!r}; one of {choices}") from None
    if value_type not in allowed:
        fits = ", ".join(allowed)
        raise ValueError(f"{area} cannot hold {value_type} in {text!r}; {area} holds {fits}")
    return value_type


def _encode_string(address: S7Address, value: Value) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{address} takes a str, not {value!r}")
    assert address.length is not None
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{address} holds Latin-1 characters only") from None
    if len(raw) > address.length:
        raise ValueError(f"{len(raw)} characters do not fit in {address}")
    return bytes([address.length, len(raw)]) + raw


def _validate_spec(value: Any) -> S7Address:
    if isinstance(value, S7Address):
        return value
    if not isinstance(value, str):
        msg = f"an S7 address is a string like 'DB10.DBX0.0', not {value!r}"
        raise ValueError(msg)  # noqa: TRY004 (pydantic reports ValueError)
    return S7Address.parse(value)


S7Spec = Annotated[
    S7Address,
    PlainValidator(_validate_spec),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^DB\d+\.DB[XBWD]\d+(\.\d)?(:\w+)*$"}),
]
"""An `S7Address` field in a pydantic model, written as text in config files."""
