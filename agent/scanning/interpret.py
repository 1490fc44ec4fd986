r"""Scan interpretation: the whole meaning of one read at a station, decided in one place.

`interpret` turns the bytes a scanner driver framed into what they mean where they were read
(`StationRules`: the station's role and, at a line, which line and its `WO:`/`OP:` prefixes):

- `Receipt`, `Shipment`: goods received at an inbound dock, shipped at an outbound one;
- `Material`: material consumed at a line, with the line it goes into;
- `WorkOrderScan`, `BadgeScan`: a work order or an operator badge scanned at a line;
- `Rejected`: anything it cannot accept, with its structured `Rejection`.

The first four carry an event: its type (CONTRACTS.md "Event envelope"), its ``data`` and the
lookup keys for trace queries. It is a pure function and never raises. The station
(`agent.scanning.station`) only does the I/O: it reads, hands the meaning on, commits and
answers the scanner.

How a read is decided, in order:

1. A driver framing error (over-long line, incomplete frame) is rejected with that reason.
2. Surrounding ASCII whitespace/CR/LF is stripped. Empty, longer than ``max_length`` bytes, not
   valid UTF-8, or containing a control character other than GS (0x1D) or an invisible
   format/unassigned character (bidi overrides, zero-width marks) → rejected.
3. The ISO/IEC 15424 symbology identifier, if any, decides how the data is read (names in
   `agent.scanning.symbology`, the checks in `agent.scanning.gs1_data`):

   - GS1 FNC1 symbologies ``]C1 ]d2 ]Q3 ]e0 ]e1 ]e2``: the data must be a valid GS1 element string
     (or, in GS1 DataMatrix / GS1 QR, a GS1 Digital Link URI);
   - EAN/UPC and ITF-14 ``]E0 ]E3 ]E4 ]I1``: the data must be a valid GTIN;
   - any other identifier: a GS1 Digital Link URI (plain QR / Data Matrix carry them), else plain;
   - no identifier: a Digital Link URI, a bare 8/12/13/14-digit GTIN, a bare 18-digit SSCC, an
     element string (contains GS, e.g. a leading FNC1 sent as GS, or starts with AI 00/01/02 and
     its full fixed-length value), or an HRI string ``(01)...(10)...`` must each validate; any
     other text is a plain barcode.
4. The station role gives the meaning: inbound → receipt (``goods.received``), outbound →
   shipment (``goods.shipped``), line → material (``material.consumed``, into the station's
   line; the batch tracker adds ``batch``).
5. At a line, a material read starting with the work-order prefix (`WO:`) is a work order, one
   with the operator prefix (`OP:`) a badge; what follows the prefix obeys the text rule of
   `agent.text` (work order at most 64 characters, badge at most 32, printable only, so no GS
   either), else the read is rejected with the reason (``work_order: longer than 64
   characters (70)``).

Accepted GS1 data: ``raw`` (stripped text, GS kept), ``symbology``, ``gs1`` (AI → value as
scanned; a bare GTIN appears as AI 01 in its 14-digit form, a bare SSCC as AI 00), and where
present ``gtin`` (14 digits, AI 01 or else 02), ``lot`` (10), ``serial`` (21), ``sscc`` (00),
``expiry`` (17, ISO date) and ``quantity`` (30, else 37, as int). A plain barcode gives ``raw`` and
``symbology`` only. Rejected: ``raw`` as printable ASCII (``\xNN`` for every other byte, ``\\``
for a backslash, cut at 200 bytes with a marker), ``reason`` (English) and ``reason_code`` with
``reason_params``, the same for a reader in another language (codes in `agent.scanning.rejections`).
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from typing import Any, ClassVar

from agent.config.scanners import StationRole
from agent.scanning import rejections
from agent.scanning.gs1_data import GS, Gs1Read, category_of, parse_gs1
from agent.scanning.rejections import Rejection
from agent.scanning.symbology import split_identifier, symbology_name
from agent.text import OPERATOR_MAX, WORK_ORDER_MAX, TextRefused, checked, first_forbidden

log = logging.getLogger(__name__)

REJECTED = "scan.rejected"
REJECTED_RAW_MAX_BYTES = 200
"""A rejected read's ``raw`` shows at most this many bytes of it, then a marker."""

Keys = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class StationRules:
    """Where a read is made, as far as its meaning goes.

    `line` is the line a line scanner feeds (None: no line on this node, so no batch and no
    work-order or badge scans); the prefixes mark work-order and badge scans at that line.
    """

    role: StationRole
    line: str | None = None
    work_order_prefix: str | None = None
    operator_prefix: str | None = None
    max_length: int = 512


@dataclass(frozen=True, slots=True)
class Receipt:
    """Goods received at an inbound dock."""

    type: ClassVar[str] = "goods.received"
    data: dict[str, Any]
    keys: Keys = ()


@dataclass(frozen=True, slots=True)
class Shipment:
    """Goods shipped at an outbound dock."""

    type: ClassVar[str] = "goods.shipped"
    data: dict[str, Any]
    keys: Keys = ()


@dataclass(frozen=True, slots=True)
class Material:
    """Material consumed at a line scanner, into the open batch of `line` (None: no line)."""

    type: ClassVar[str] = "material.consumed"
    data: dict[str, Any]
    keys: Keys = ()
    line: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A read that cannot be accepted: `data` is the event's, `rejection` why (as a code too)."""

    type: ClassVar[str] = REJECTED
    data: dict[str, Any]
    rejection: Rejection
    keys: ClassVar[Keys] = ()


@dataclass(frozen=True, slots=True)
class WorkOrderScan:
    """A work-order barcode scanned at a line: `work_order` runs on `line` from now on."""

    line: str
    work_order: str


@dataclass(frozen=True, slots=True)
class BadgeScan:
    """An operator badge scanned at a line: `operator` runs `line` from now on."""

    line: str
    operator: str


ScanEvent = Receipt | Shipment | Material | Rejected
"""A meaning that is an event of its own."""


@dataclass(frozen=True, slots=True)
class PackingRead:
    """A read a packing station accepted: what it did is `agent.packing`'s (its own events)."""

    type: ClassVar[str] = "packing"
    data: dict[str, Any]
    keys: ClassVar[Keys] = ()


Scanned = ScanEvent | PackingRead
"""What an accepted or rejected read meant, as the status page's recent scans list it."""

Meaning = ScanEvent | WorkOrderScan | BadgeScan
"""Everything a read can mean."""

_ACCEPTED: dict[StationRole, type[Receipt | Shipment | Material]] = {
    StationRole.INBOUND: Receipt,
    StationRole.OUTBOUND: Shipment,
    StationRole.LINE: Material,
    # a packing station's read is its GS1 data; what it does there is `agent.packing`'s
    StationRole.PACKING: Receipt,
}

_ESCAPES = tuple(
    "\\\\" if byte == 0x5C else chr(byte) if 0x20 <= byte < 0x7F else f"\\x{byte:02x}"  # noqa: PLR2004
    for byte in range(256)
)


def interpret(raw: bytes, at: StationRules, *, error: str | None = None) -> Meaning:
    """The meaning of one framed read at a station with the rules `at`.

    ``error`` is the driver's framing error for this read, if any; the read is then rejected
    with it. Never raises.
    """
    stripped = raw.strip()
    if error is not None:
        return rejected(stripped, rejections.framing(error))
    try:
        meaning = _interpret(stripped, at)
    except Exception as exc:
        # Last resort: biip's own failures are caught narrowly in gs1_data; anything else is a
        # bug met on odd input, and a bad barcode must never take its station down.
        log.warning("scan interpretation failed unexpectedly: %s", type(exc).__name__)
        log.debug("scan interpretation failure", exc_info=True)
        return rejected(stripped, rejections.unparseable(exc))
    if at.line is not None and type(meaning) is Material:
        return _line_instruction(meaning, at.line, at)
    return meaning


def _interpret(stripped: bytes, at: StationRules) -> ScanEvent:
    text = _decoded(stripped, at.max_length)
    if isinstance(text, Rejected):
        return text
    identifier, content = split_identifier(text)
    if not content:
        return rejected(stripped, rejections.no_data(identifier))
    parsed = parse_gs1(category_of(identifier), content)
    if isinstance(parsed, Rejection):
        return rejected(stripped, parsed)
    return _accepted(at, {"raw": text, "symbology": symbology_name(identifier)}, parsed)


def _accepted(at: StationRules, data: dict[str, Any], parsed: Gs1Read | None) -> ScanEvent:
    kind = _ACCEPTED[at.role]
    keys: Keys = ()
    if parsed is not None:
        data["gs1"] = dict(parsed.elements)
        data.update(parsed.fields)
        keys = parsed.keys
    if kind is Material:
        return Material(data, keys, at.line)
    return kind(data, keys)


def _line_instruction(material: Material, line: str, at: StationRules) -> Meaning:
    """A work-order or badge scan at the line, or its rejection; else the material itself."""
    raw = str(material.data["raw"])
    for prefix, field, cap in (
        (at.work_order_prefix, "work_order", WORK_ORDER_MAX),
        (at.operator_prefix, "operator", OPERATOR_MAX),
    ):
        if not prefix or not raw.startswith(prefix) or len(raw) == len(prefix):
            continue
        try:
            text = checked(field, raw.removeprefix(prefix), max_length=cap)
        except TextRefused as exc:
            return rejected(raw.encode(), rejections.text_refused(exc.field, exc.problem))
        return WorkOrderScan(line, text) if field == "work_order" else BadgeScan(line, text)
    return material


def _decoded(stripped: bytes, max_length: int) -> str | Rejected:
    """Decode a stripped read, or reject it (empty, too long, not UTF-8, control characters)."""
    if not stripped:
        return rejected(stripped, rejections.empty())
    if len(stripped) > max_length:
        return rejected(stripped, rejections.too_long(max_length, len(stripped)))
    try:
        text = stripped.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = stripped[exc.start]
        return rejected(stripped, rejections.not_utf8(byte, exc.start))
    problem = _forbidden_character(text)
    if problem is not None:
        return rejected(stripped, problem)
    return text


def rejected(stripped: bytes, rejection: Rejection) -> Rejected:
    """A rejected read, with its reason as text and as code."""
    data = {
        "raw": escaped(stripped),
        "reason": rejection.reason,
        "reason_code": rejection.code,
        "reason_params": dict(rejection.params),
    }
    return Rejected(data, rejection)


def escaped(raw: bytes) -> str:
    r"""Show bytes as printable ASCII: ``\xNN`` for others, ``\\`` for "\", cut with a marker."""
    shown = "".join([_ESCAPES[byte] for byte in raw[:REJECTED_RAW_MAX_BYTES]])
    if len(raw) > REJECTED_RAW_MAX_BYTES:
        shown += f"...[{len(raw) - REJECTED_RAW_MAX_BYTES} more bytes]"
    return shown


def _forbidden_character(text: str) -> Rejection | None:
    """The text rule of `agent.text` (GS kept, as GS1 needs it), as a rejection."""
    found = first_forbidden(text, allow=GS)
    if found is None:
        return None
    char, position = found
    if unicodedata.category(char) == "Cc":
        return rejections.control_character(char, position)
    return rejections.non_printing_character(char, position)
