"""CIP values of Logix tags: read replies decoded and write requests built, by the tag's own type.

pylogix 1.1.6 builds the path of a tag (`_build_ioi`) and carries requests (`conn.send`), but
its value handling is wrong for strings: its multi-tag read returns the length byte of a
SHORT_STRING and the first byte of a CIP STRING, its single read fails on a padded CIP STRING,
and it writes a CIP STRING (0xD0) with a one-byte length, losing the first character. So the
driver decodes and encodes values here, by the type the PLC reports for the tag:

    0xC1 BOOL · 0xC2..0xC8 SINT INT DINT LINT USINT UINT UDINT · 0xCA REAL · 0xCB LREAL
    0xD0 CIP STRING (2-byte length, padded to even) · 0xDA SHORT_STRING (1-byte length)
    0xA0 + 0x0FCE: the Logix STRING structure (4-byte LEN, 82 characters)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from drivers.base import AddressInfo, Value, ValueKind

STRUCT = 0xA0
LOGIX_STRING_HANDLE = 0x0FCE
LOGIX_STRING_CHARS = 82
CIP_STRING = 0xD0
SHORT_STRING = 0xDA
BOOL = 0xC1
_NUMBERS = {  # type → (struct format, kind, bits, signed, name)
    0xC2: ("<b", ValueKind.INTEGER, 8, True, "SINT"),
    0xC3: ("<h", ValueKind.INTEGER, 16, True, "INT"),
    0xC4: ("<i", ValueKind.INTEGER, 32, True, "DINT"),
    0xC5: ("<q", ValueKind.INTEGER, 64, True, "LINT"),
    0xC6: ("<B", ValueKind.INTEGER, 8, False, "USINT"),
    0xC7: ("<H", ValueKind.INTEGER, 16, False, "UINT"),
    0xC8: ("<I", ValueKind.INTEGER, 32, False, "UDINT"),
    0xCA: ("<f", ValueKind.FLOAT, None, False, "REAL"),
    0xCB: ("<d", ValueKind.FLOAT, None, False, "LREAL"),
}
_STRINGS = {
    CIP_STRING: ("STRING (CIP)", 65535),
    SHORT_STRING: ("SHORT_STRING", 255),
    STRUCT: ("STRING", LOGIX_STRING_CHARS),
}


@dataclass(frozen=True, slots=True)
class TagType:
    """A tag's CIP type as the PLC reports it in a read reply."""

    code: int
    handle: int = 0  # the structure handle of a STRUCT

    @property
    def supported(self) -> bool:
        """Whether the driver can use tags of this type."""
        if self.code == STRUCT:
            return self.handle == LOGIX_STRING_HANDLE
        return self.code in _NUMBERS or self.code in (BOOL, CIP_STRING, SHORT_STRING)

    @property
    def name(self) -> str:
        """The type's Logix name, for messages."""
        if self.code == BOOL:
            return "BOOL"
        if self.code in _NUMBERS:
            return _NUMBERS[self.code][4]
        if self.code in _STRINGS and self.supported:
            return _STRINGS[self.code][0]
        return f"type 0x{self.code:02X}" + (f"/0x{self.handle:04X}" if self.handle else "")

    def info(self) -> AddressInfo:
        """The protocol-neutral view; a Logix tag can be written (external access aside)."""
        if self.code == BOOL:
            return AddressInfo(ValueKind.BOOL, writable=True, type_name="BOOL")
        if self.code in _NUMBERS:
            _, kind, bits, signed, name = _NUMBERS[self.code]
            return AddressInfo(kind, writable=True, type_name=name, bits=bits, signed=signed)
        name, length = _STRINGS[self.code]
        return AddressInfo(ValueKind.STRING, writable=True, type_name=name, length=length)


def split_reply(segment: bytes) -> tuple[int, TagType | None, bytes]:
    """(CIP general status, type, value bytes) of one read reply (from the reply service)."""
    if len(segment) < 4:  # noqa: PLR2004 (service, reserved, status, extended size)
        raise ValueError("a read reply shorter than its header")
    status, extended = segment[2], segment[3]
    body = segment[4 + 2 * extended :]
    if status != 0:
        return status, None, b""
    if len(body) < 2:  # noqa: PLR2004
        raise ValueError("a read reply without a type")
    if body[0] == STRUCT:
        if len(body) < 4:  # noqa: PLR2004
            raise ValueError("a structure reply without its handle")
        return 0, TagType(STRUCT, struct.unpack_from("<H", body, 2)[0]), body[4:]
    return 0, TagType(body[0]), body[2:]


def decode(tag_type: TagType, data: bytes) -> Value:
    """The value of one tag from the bytes after its type."""
    code = tag_type.code
    if code == BOOL:
        return bool(data[0])
    if code in _NUMBERS:
        fmt = _NUMBERS[code][0]
        value = struct.unpack_from(fmt, data)[0]
        return float(value) if _NUMBERS[code][1] is ValueKind.FLOAT else int(value)
    if code == SHORT_STRING:
        return data[1 : 1 + data[0]].decode("latin-1")
    if code == CIP_STRING:
        length = struct.unpack_from("<H", data)[0]
        return data[2 : 2 + length].decode("latin-1")
    if code == STRUCT and tag_type.handle == LOGIX_STRING_HANDLE:
        length = min(struct.unpack_from("<I", data)[0], LOGIX_STRING_CHARS)
        return data[4 : 4 + length].decode("latin-1")
    raise ValueError(f"cannot use a tag of {tag_type.name}")


def encode(tag_type: TagType, value: Value, tag: str) -> bytes:
    """The type and value part of a Write Tag request for one element."""
    info = tag_type.info()
    code = tag_type.code
    if info.kind is ValueKind.STRING:
        return _encode_string(tag_type, value, tag)
    if code == BOOL:
        if not isinstance(value, bool) and value not in (0, 1):
            raise TypeError(f"{tag} takes a bool, not {value!r}")
        return struct.pack("<BBHB", code, 0, 1, 1 if value else 0)
    if isinstance(value, bool | str):
        raise TypeError(f"{tag} takes a number, not {value!r}")
    fmt = _NUMBERS[code][0]
    if info.kind is ValueKind.INTEGER and not isinstance(value, int):
        raise TypeError(f"{tag} takes an integer ({info.type_name}), not {value!r}")
    try:
        return struct.pack("<BBH", code, 0, 1) + struct.pack(fmt, value)
    except struct.error:
        raise ValueError(f"{value} is out of range for {tag} ({info.type_name})") from None


def _encode_string(tag_type: TagType, value: Value, tag: str) -> bytes:
    info = tag_type.info()
    code = tag_type.code
    if not isinstance(value, str):
        raise TypeError(f"{tag} takes a string, not {value!r}")
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{tag} holds Latin-1 characters only") from None
    assert info.length is not None
    if len(raw) > info.length:
        raise ValueError(f"{len(raw)} characters do not fit {tag} ({info.type_name})")
    if code == SHORT_STRING:
        return struct.pack("<BBH", code, 0, 1) + bytes([len(raw)]) + raw
    if code == CIP_STRING:
        padded = raw + b"\x00" * (len(raw) % 2)
        return struct.pack("<BBHH", code, 0, 1, len(raw)) + padded
    data = raw.ljust(LOGIX_STRING_CHARS, b"\x00")
    return struct.pack("<BBHHI", STRUCT, 2, LOGIX_STRING_HANDLE, 1, len(raw)) + data
