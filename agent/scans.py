r"""Scan interpretation: what one scanned line means at a station, with GS1 validation by biip.

`interpret` turns the bytes a scanner driver framed into an event type and its ``data``
(CONTRACTS.md "Event envelope") plus lookup keys for trace queries. It is a pure function and never
raises: anything it cannot accept becomes ``scan.rejected`` with a human-readable ``reason``.

How a read is decided, in order:

1. A driver framing error (over-long line, incomplete frame) is rejected with that reason.
2. Surrounding ASCII whitespace/CR/LF is stripped. Empty, longer than ``max_length`` bytes, not
   valid UTF-8, or containing a control character other than GS (0x1D) or an invisible
   format/unassigned character (bidi overrides, zero-width marks) → rejected.
3. The ISO/IEC 15424 symbology identifier, if any, decides how the data is read (names in
   `agent.symbology`):

   - GS1 FNC1 symbologies ``]C1 ]d2 ]Q3 ]e0 ]e1 ]e2``: the data must be a valid GS1 element string
     (or, in GS1 DataMatrix / GS1 QR, a GS1 Digital Link URI);
   - EAN/UPC and ITF-14 ``]E0 ]E3 ]E4 ]I1``: the data must be a valid GTIN;
   - any other identifier: a GS1 Digital Link URI (plain QR / Data Matrix carry them), else plain;
   - no identifier: a Digital Link URI, a bare 8/12/13/14-digit GTIN, a bare 18-digit SSCC, an
     element string (contains GS, e.g. a leading FNC1 sent as GS, or starts with AI 00/01/02 and
     its full fixed-length value), or an HRI string ``(01)...(10)...`` must each validate; any
     other text is a plain barcode.

   GS1 validation is biip's (AI table, formats, check digits, dates with day 00 = last day of
   the month, Digital Link syntax) plus three GS1 rules biip leaves to the caller: the check
   digits of GTIN/SSCC/GLN inside a message, a GS after every variable-length value that is not
   last (so an over-long lot cannot silently run into a following AI), and an AI repeated with a
   different value.
4. The station role gives the event type: inbound → ``goods.received``, outbound →
   ``goods.shipped``, line → ``material.consumed`` (the agent adds ``batch``).

Accepted GS1 data: ``raw`` (stripped text, GS kept), ``symbology``, ``gs1`` (AI → value as
scanned; a bare GTIN appears as AI 01 in its 14-digit form, a bare SSCC as AI 00), and where
present ``gtin`` (14 digits, AI 01 or else 02), ``lot`` (10), ``serial`` (21), ``sscc`` (00),
``expiry`` (17, ISO date) and ``quantity`` (30, else 37, as int). A plain barcode gives ``raw`` and
``symbology`` only. Rejected: ``raw`` as printable ASCII (``\xNN`` for every other byte, ``\\``
for a backslash, cut at 200 bytes with a marker) and ``reason``.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from biip import ParseConfig, ParseError
from biip.gs1_application_identifiers import GS1ApplicationIdentifier
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_messages import GS1Message
from biip.gtin import Gtin
from biip.sscc import Sscc
from biip.symbology import GS1Symbology

from agent.gs1_elements import extract_element
from agent.symbology import (
    GS1_MESSAGE_SYMBOLOGIES,
    GTIN_SYMBOLOGIES,
    split_identifier,
    symbology_name,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from biip.gs1_element_strings import GS1ElementString
    from biip.symbology import SymbologyIdentifier

log = logging.getLogger(__name__)

GS = "\x1d"
REJECTED = "scan.rejected"
REJECTED_RAW_MAX_BYTES = 200
"""A rejected read's ``raw`` shows at most this many bytes of it, then a marker."""


class StationRole(StrEnum):
    """What a scanner's station does, which decides what its scans mean."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"
    LINE = "line"


_EVENT_TYPES: dict[str, str] = {
    StationRole.INBOUND: "goods.received",
    StationRole.OUTBOUND: "goods.shipped",
    StationRole.LINE: "material.consumed",
}


@dataclass(frozen=True, slots=True)
class Interpretation:
    """The meaning of one read: event type, event ``data`` and trace lookup keys."""

    type: str
    data: dict[str, Any]
    keys: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class _Gs1Scan:
    """A validated GS1 read, independent of station and raw text (so it can be cached)."""

    elements: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, str | int], ...]
    keys: tuple[tuple[str, str], ...]


# Built once: biip reads it on every element (the bench pushes ~20k scans/s through here).
_CONFIG = ParseConfig(separator_chars=(GS,))
_GTIN_LENGTHS = frozenset({8, 12, 13, 14})
_SSCC_LENGTH = 18
_ASCII_CONTROL = re.compile(r"[\x00-\x1c\x1e\x1f\x7f]")
_NON_PRINTING_CATEGORIES = frozenset({"Cf", "Cn", "Co", "Cs", "Zl", "Zp"})
# Without a symbology identifier, text is read as an element string only when it starts with an
# SSCC or GTIN element in full; shorter digit runs ("4711", "17261231") stay plain or bare GTINs.
_ELEMENT_STRING_START = re.compile(r"00\d{18}|0[12]\d{14}", re.ASCII)
_HRI_START = re.compile(r"\(\d{2,4}\)", re.ASCII)
_ESCAPES = tuple(
    "\\\\" if byte == 0x5C else chr(byte) if 0x20 <= byte < 0x7F else f"\\x{byte:02x}"  # noqa: PLR2004
    for byte in range(256)
)

_Category = Literal["gs1", "gs1-or-uri", "gtin", "gtin-addon", "other", "none"]


def interpret(
    raw: bytes,
    role: StationRole,
    *,
    max_length: int = 512,
    error: str | None = None,
) -> Interpretation:
    """Interpret one framed read from a scanner at a station of the given role.

    ``error`` is the driver's framing error for this read, if any; the read is then rejected
    with it. Never raises.
    """
    stripped = raw.strip()
    if error is not None:
        return _rejected(stripped, error)
    try:
        return _interpret(stripped, role, max_length)
    except Exception as exc:
        # Last resort: biip's own failures are caught narrowly below; anything else is a bug
        # met on odd input, and a bad barcode must never take its station down.
        log.warning("scan interpretation failed unexpectedly: %s", type(exc).__name__)
        log.debug("scan interpretation failure", exc_info=True)
        return _rejected(stripped, f"unparseable: {type(exc).__name__}: {exc}"[:200])


def _interpret(stripped: bytes, role: StationRole, max_length: int) -> Interpretation:
    text = _decoded(stripped, max_length)
    if isinstance(text, Interpretation):
        return text
    identifier, content = split_identifier(text)
    if not content:
        return _rejected(stripped, f"no data after symbology identifier {identifier}")
    parsed = _parse(_category(identifier), content)
    if isinstance(parsed, str):
        return _rejected(stripped, parsed)
    data: dict[str, Any] = {"raw": text, "symbology": symbology_name(identifier)}
    if parsed is None:
        return Interpretation(type=_EVENT_TYPES[role], data=data, keys=())
    data["gs1"] = dict(parsed.elements)
    data.update(parsed.fields)
    return Interpretation(type=_EVENT_TYPES[role], data=data, keys=parsed.keys)


def _decoded(stripped: bytes, max_length: int) -> str | Interpretation:
    """Decode a stripped read, or reject it (empty, too long, not UTF-8, control characters)."""
    if not stripped:
        return _rejected(stripped, "empty read")
    if len(stripped) > max_length:
        return _rejected(stripped, f"longer than {max_length} bytes ({len(stripped)})")
    try:
        text = stripped.decode("utf-8")
    except UnicodeDecodeError as exc:
        byte = stripped[exc.start]
        return _rejected(stripped, f"not valid UTF-8 (byte 0x{byte:02x} at position {exc.start})")
    problem = _forbidden_character(text)
    if problem is not None:
        return _rejected(stripped, problem)
    return text


def _rejected(stripped: bytes, reason: str) -> Interpretation:
    return Interpretation(type=REJECTED, data={"raw": escaped(stripped), "reason": reason}, keys=())


def escaped(raw: bytes) -> str:
    r"""Show bytes as printable ASCII: ``\xNN`` for others, ``\\`` for "\", cut with a marker."""
    shown = "".join([_ESCAPES[byte] for byte in raw[:REJECTED_RAW_MAX_BYTES]])
    if len(raw) > REJECTED_RAW_MAX_BYTES:
        shown += f"...[{len(raw) - REJECTED_RAW_MAX_BYTES} more bytes]"
    return shown


def _forbidden_character(text: str) -> str | None:
    if text.isascii():
        match = _ASCII_CONTROL.search(text)
        if match is None:
            return None
        return f"control character 0x{ord(match.group()):02x} at position {match.start()}"
    for position, char in enumerate(text):
        if char == GS:
            continue
        category = unicodedata.category(char)
        if category == "Cc":
            return f"control character 0x{ord(char):02x} at position {position}"
        if category in _NON_PRINTING_CATEGORIES:
            return f"non-printing character U+{ord(char):04X} at position {position}"
    return None


def _category(identifier: SymbologyIdentifier | None) -> _Category:
    if identifier is None:
        return "none"
    symbology = identifier.gs1_symbology
    if symbology in (GS1Symbology.GS1_DATAMATRIX, GS1Symbology.GS1_QR_CODE):
        return "gs1-or-uri"
    if symbology in GS1_MESSAGE_SYMBOLOGIES:
        return "gs1"
    if symbology == GS1Symbology.EAN_13_WITH_ADD_ON:
        return "gtin-addon"
    if symbology in GTIN_SYMBOLOGIES:
        return "gtin"
    return "other"


@functools.lru_cache(maxsize=4096)
def _parse(category: _Category, content: str) -> _Gs1Scan | str | None:
    """Validate the data after the identifier: a GS1 read, a rejection reason, or None (plain).

    Cached because biip takes tens of microseconds per message and the same labels are scanned
    again and again (a pallet's cartons, material re-scanned at the line).
    """
    is_uri = content[:8].lower().startswith(("http://", "https://"))
    match category:
        case "gs1":
            return _element_string(content)
        case "gs1-or-uri":
            return _digital_link(content, required=True) if is_uri else _element_string(content)
        case "gtin":
            return _bare_gtin(content)
        case "gtin-addon":
            # EAN-13 / UPC with a 2- or 5-digit add-on: the GTIN is the first 13 digits.
            return _bare_gtin(content[:13] if len(content) in (15, 18) else content)
        case "other":
            return _digital_link(content, required=False) if is_uri else None
        case "none":
            return _unprefixed(content, is_uri=is_uri)


def _unprefixed(content: str, *, is_uri: bool) -> _Gs1Scan | str | None:
    if is_uri:
        return _digital_link(content, required=False)
    if content.isascii() and content.isdigit():
        if len(content) in _GTIN_LENGTHS:
            return _bare_gtin(content)
        if len(content) == _SSCC_LENGTH:
            return _bare_sscc(content)
    if GS in content or _ELEMENT_STRING_START.match(content):
        return _element_string(content)
    if _HRI_START.match(content):
        return _hri(content)
    return None


def _hri(content: str) -> _Gs1Scan | str:
    try:
        message = GS1Message.parse_hri(content, config=_CONFIG)
    except ParseError as exc:
        return f"GS1: {exc}"
    return _validated(message.element_strings)


def _element_string(content: str) -> _Gs1Scan | str:
    # biip's GS1Message.parse loop, with GS1's separator rule added: a variable-length value
    # that is not last must end with GS. Without it an over-long or malformed lot would silently
    # run into whatever AI its tail happens to spell.
    elements: list[GS1ElementString] = []
    rest = content.lstrip(GS)
    while rest:
        try:
            element = extract_element(rest)
        except ParseError as exc:
            return _element_error(rest, exc)
        elements.append(element)
        rest = rest[len(element) :]
        if rest.startswith(GS):
            rest = rest.lstrip(GS)
        elif rest and element.ai.separator_required:
            ai = element.ai
            return (
                f"GS1: value for AI ({ai.ai}) {ai.data_title} is too long or has invalid "
                f"characters (format {ai.format}), or a GS separator is missing before {rest!r}"
            )
    return _validated(elements)


def _element_error(rest: str, exc: ParseError) -> str:
    try:
        ai = GS1ApplicationIdentifier.extract(rest)
    except ParseError:
        return f"GS1: unknown application identifier at {rest[:12]!r}"
    value = rest[len(ai) :].split(GS, 1)[0]
    reason = f"GS1: invalid value {value!r} for AI ({ai.ai}) {ai.data_title} (format {ai.format})"
    if isinstance(exc.__cause__, ValueError):
        # biip's date check (month and day exist) failed after the pattern matched.
        reason += f": {exc}"
    return reason


def _digital_link(content: str, *, required: bool) -> _Gs1Scan | str | None:
    try:
        uri = GS1DigitalLinkURI.parse(content, config=_CONFIG)
    except ParseError as exc:
        # A URL without a GS1 key in its path is an ordinary URL (a plain barcode) unless the
        # symbology promised GS1 data; any other failure is a broken Digital Link.
        if not required and "primary identifier" in str(exc):
            return None
        return f"GS1: invalid Digital Link URI: {exc}"
    except ValueError as exc:  # urlsplit on a malformed URL, e.g. an unclosed "[" host
        return f"GS1: invalid Digital Link URI: {exc}" if required else None
    return _validated(uri.element_strings)


def _bare_gtin(content: str) -> _Gs1Scan | str:
    try:
        gtin = Gtin.parse(content, config=_CONFIG)
    except ParseError as exc:
        return f"GS1: {exc}"
    return _scan((("01", gtin.as_gtin_14()),), expiry=None)


def _bare_sscc(content: str) -> _Gs1Scan | str:
    try:
        sscc = Sscc.parse(content, config=_CONFIG)
    except ParseError as exc:
        return f"GS1: {exc}"
    return _scan((("00", sscc.value),), expiry=None)


def _validated(elements: Iterable[GS1ElementString]) -> _Gs1Scan | str:
    values: dict[str, str] = {}
    expiry: str | None = None
    for element in elements:
        ai = element.ai.ai
        inner_error = element.gtin_error or element.sscc_error or element.gln_error
        if inner_error:
            return f"GS1: {inner_error}"
        if not element.value:
            return f"GS1: empty value for AI ({ai}) {element.ai.data_title}"
        if values.setdefault(ai, element.value) != element.value:
            return f"GS1: AI ({ai}) appears twice with different values"
        if ai == "17" and element.date is not None:
            expiry = element.date.isoformat()
    if not values:
        return "GS1: no element strings"
    return _scan(tuple(values.items()), expiry=expiry)


def _scan(elements: tuple[tuple[str, str], ...], *, expiry: str | None) -> _Gs1Scan:
    gs1 = dict(elements)
    gtin = gs1.get("01") or gs1.get("02")
    lot, serial, sscc = gs1.get("10"), gs1.get("21"), gs1.get("00")
    quantity = gs1.get("30") or gs1.get("37")
    fields: list[tuple[str, str | int]] = []
    keys: list[tuple[str, str]] = []
    if gtin:
        fields.append(("gtin", gtin))
        keys.append(("gtin", gtin))
    if lot:
        fields.append(("lot", lot))
        keys.append(("lot", lot))
        if gtin:
            keys.append(("gtin_lot", f"{gtin}|{lot}"))
    if serial:
        fields.append(("serial", serial))
        if gtin:
            keys.append(("serial", f"{gtin}|{serial}"))
    if sscc:
        fields.append(("sscc", sscc))
        keys.append(("sscc", sscc))
    if expiry:
        fields.append(("expiry", expiry))
    if quantity and quantity.isdigit():
        fields.append(("quantity", int(quantity)))
    return _Gs1Scan(elements=elements, fields=tuple(fields), keys=tuple(keys))
