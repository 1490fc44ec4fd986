"""How the watched S7 values are packed into Read Var requests, and what S7 answers mean.

`plan_reads` merges the watched addresses into byte ranges per data block (neighbours share a
range when the gap is small; a bit is read as its byte) and packs the ranges into as few
Read Var requests as the negotiated PDU size and the 20-item limit allow: normally one. A range
larger than one PDU can carry is split across requests. `read_request` builds one request,
`read_items` parses its answer; `item_error` and `header_error` put S7 return codes in words.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from snap7.datatypes import S7Area, S7DataTypes, S7WordLen

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from drivers.plcs.s7_address import S7Address

MAX_ITEMS = 20  # what S7-300/400 CPUs accept in one Read Var (snap7's MAX_VARS)
REQUEST_HEADER = 10
RESPONSE_HEADER = 12
ITEM_SPEC = 12
ITEM_HEADER = 4
READ_VAR = 0x04
SUCCESS = 0xFF
MAX_GAP_BYTES = 8

_ITEM_ERRORS = {
    0x01: "hardware error in the CPU",
    0x03: "access not allowed (PUT/GET not permitted, a DB with optimized block access, "
    "or the CPU's protection level)",
    0x05: "address out of range (the data block is shorter)",
    0x06: "data type not supported",
    0x07: "data type inconsistent",
    0x0A: "object does not exist (no such data block)",
}
_HEADER_ERRORS = {
    0x8104: "the CPU does not offer this service (on an S7-1200/1500: allow PUT/GET "
    "communication in the CPU's protection settings)",
    0x8500: "the request does not fit the CPU's PDU",
    0xD0A1: "the CPU's protection level forbids this",
    0xD241: "the CPU needs a password for this",
}
REFUSALS = {0x8104, 0xD0A1, 0xD241}


@dataclass(frozen=True, slots=True)
class ReadItem:
    """One variable of a Read Var request: `size` bytes of DB `db` from byte `start`."""

    db: int
    start: int
    size: int
    range_no: int  # which merged range the bytes belong to

    @property
    def end(self) -> int:
        """The first byte after the item."""
        return self.start + self.size


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """The requests of one poll and the merged ranges they fill."""

    requests: list[list[ReadItem]]
    ranges: list[tuple[int, int, int]]  # (db, start, end)

    def locate(self, address: S7Address) -> tuple[int, int]:
        """(range number, offset in the range) of an address."""
        for number, (db, start, end) in enumerate(self.ranges):
            if db == address.db and start <= address.offset and address.end <= end:
                return number, address.offset - start
        raise KeyError(str(address))


def plan_reads(addresses: Iterable[S7Address], pdu_size: int) -> ReadPlan:
    """Pack the addresses into as few Read Var requests as the PDU and item limits allow."""
    ranges: list[tuple[int, int, int]] = []
    for address in sorted(addresses, key=lambda a: (a.db, a.offset, a.end)):
        if (
            ranges
            and ranges[-1][0] == address.db
            and address.offset - ranges[-1][2] <= (MAX_GAP_BYTES)
        ):
            db, start, end = ranges[-1]
            ranges[-1] = (db, start, max(end, address.end))
        else:
            ranges.append((address.db, address.offset, address.end))
    most = pdu_size - RESPONSE_HEADER - 2 - ITEM_HEADER - 1  # one item's data, with a fill byte
    items = [
        ReadItem(db, piece, min(most, end - piece), number)
        for number, (db, start, end) in enumerate(ranges)
        for piece in range(start, end, most)
    ]
    requests: list[list[ReadItem]] = []
    asked = answered = 0
    for item in items:
        cost_asked, cost_answered = ITEM_SPEC, ITEM_HEADER + item.size + item.size % 2
        if (
            not requests
            or len(requests[-1]) >= MAX_ITEMS
            or REQUEST_HEADER + 2 + asked + cost_asked > pdu_size
            or RESPONSE_HEADER + 2 + answered + cost_answered > pdu_size
        ):
            requests.append([])
            asked = answered = 0
        requests[-1].append(item)
        asked += cost_asked
        answered += cost_answered
    return ReadPlan(requests, ranges)


def read_request(items: Sequence[ReadItem], sequence: int) -> bytes:
    """One Read Var request (S7 job) for the items, with its PDU reference `sequence`."""
    specs = b"".join(
        S7DataTypes.encode_address(S7Area.DB, i.db, i.start, S7WordLen.BYTE, i.size) for i in items
    )
    params = struct.pack(">BB", READ_VAR, len(items)) + specs
    header = struct.pack(">BBHHHH", 0x32, 0x01, 0, sequence, len(params), 0)
    return header + params


def read_items(data: bytes, items: Sequence[ReadItem]) -> list[bytes | int]:
    """Split a Read Var answer's data section: the bytes of each item, or its return code."""
    found: list[bytes | int] = []
    offset = 0
    for number, item in enumerate(items):
        if offset + ITEM_HEADER > len(data):
            raise ValueError(f"answer truncated at item {number + 1} of {len(items)}")
        code, transport, length = struct.unpack_from(">BBH", data, offset)
        offset += ITEM_HEADER
        if code != SUCCESS:
            found.append(code)
            continue
        size = length // 8 if transport in (0x03, 0x04, 0x05) else length
        if transport == 0x03:  # noqa: PLR2004 (BIT: one byte per bit)
            size = length
        if size != item.size or offset + size > len(data):
            raise ValueError(f"item {number + 1} came back with {size} bytes, not {item.size}")
        found.append(data[offset : offset + size])
        offset += size + (size % 2 if number < len(items) - 1 else 0)
    return found


def item_error(code: int) -> str:
    """An item return code in words, with its number."""
    return f"{_ITEM_ERRORS.get(code, 'refused')} (0x{code:02X})"


def header_error(code: int) -> str:
    """A header error class/code in words, with its number."""
    return f"{_HEADER_ERRORS.get(code, 'request refused')} (0x{code:04X})"
