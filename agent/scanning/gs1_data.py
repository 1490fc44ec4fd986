"""The GS1 data a scanned text holds, validated: check digits, formats, separators, dates.

`parse_gs1` takes the text after the symbology identifier and the identifier's category and
returns a `Gs1Read` (the element strings, the fields promoted into an event's data and the
trace lookup keys), a `Rejection` saying why the text is not valid GS1 data, or None for a
plain (non-GS1) barcode. The rules, which `agent.scanning.interpret` applies in order, are in
its docstring; this module is how each is checked. GS1 validation is biip's (AI table,
formats, check digits, dates with day 00 = last day of the month, Digital Link syntax) plus
three GS1 rules biip leaves to the caller: the check digits of GTIN/SSCC/GLN inside a message,
a GS after every variable-length value that is not last, and an AI repeated with a different
value.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from biip import ParseConfig, ParseError
from biip.gs1_application_identifiers import GS1ApplicationIdentifier
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_messages import GS1Message
from biip.gtin import Gtin
from biip.sscc import Sscc
from biip.symbology import GS1Symbology

from agent.scanning import rejections
from agent.scanning.gs1_elements import extract_element
from agent.scanning.symbology import GS1_MESSAGE_SYMBOLOGIES, GTIN_SYMBOLOGIES

if TYPE_CHECKING:
    from collections.abc import Iterable

    from biip.gs1_element_strings import GS1ElementString
    from biip.symbology import SymbologyIdentifier

    from agent.scanning.rejections import Rejection

GS = "\x1d"


@dataclass(frozen=True, slots=True)
class Gs1Read:
    """A validated GS1 read, independent of station and raw text (so it can be cached)."""

    elements: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, str | int], ...]
    keys: tuple[tuple[str, str], ...]


# Built once: biip reads it on every element (the bench pushes ~20k scans/s through here).
_CONFIG = ParseConfig(separator_chars=(GS,))
_GTIN_LENGTHS = frozenset({8, 12, 13, 14})
_SSCC_LENGTH = 18
# Without a symbology identifier, text is read as an element string only when it starts with an
# SSCC or GTIN element in full; shorter digit runs ("4711", "17261231") stay plain or bare GTINs.
_ELEMENT_STRING_START = re.compile(r"00\d{18}|0[12]\d{14}", re.ASCII)
_HRI_START = re.compile(r"\(\d{2,4}\)", re.ASCII)

Category = Literal["gs1", "gs1-or-uri", "gtin", "gtin-addon", "other", "none"]


def category_of(identifier: SymbologyIdentifier | None) -> Category:
    """How the data after a symbology identifier (or none) must be read."""
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
def parse_gs1(category: Category, content: str) -> Gs1Read | Rejection | None:
    """Validate the data after the identifier: a GS1 read, a rejection, or None (plain).

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


def _unprefixed(content: str, *, is_uri: bool) -> Gs1Read | Rejection | None:
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


def _hri(content: str) -> Gs1Read | Rejection:
    try:
        message = GS1Message.parse_hri(content, config=_CONFIG)
    except ParseError as exc:
        return rejections.gs1_invalid(exc)
    return _validated(message.element_strings)


def _element_string(content: str) -> Gs1Read | Rejection:
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
            return rejections.gs1_separator_missing(element.ai, rest)
    return _validated(elements)


def _element_error(rest: str, exc: ParseError) -> Rejection:
    try:
        ai = GS1ApplicationIdentifier.extract(rest)
    except ParseError:
        return rejections.gs1_unknown_ai(rest[:12])
    value = rest[len(ai) :].split(GS, 1)[0]
    # biip's date check (month and day exist) fails after the pattern matched
    date_error = exc if isinstance(exc.__cause__, ValueError) else None
    return rejections.gs1_invalid_value(ai, value, date_error)


def _digital_link(content: str, *, required: bool) -> Gs1Read | Rejection | None:
    try:
        uri = GS1DigitalLinkURI.parse(content, config=_CONFIG)
    except ParseError as exc:
        # A URL without a GS1 key in its path is an ordinary URL (a plain barcode) unless the
        # symbology promised GS1 data; any other failure is a broken Digital Link.
        if not required and "primary identifier" in str(exc):
            return None
        return rejections.gs1_digital_link(exc)
    except ValueError as exc:  # urlsplit on a malformed URL, e.g. an unclosed "[" host
        return rejections.gs1_digital_link(exc) if required else None
    return _validated(uri.element_strings)


def _bare_gtin(content: str) -> Gs1Read | Rejection:
    try:
        gtin = Gtin.parse(content, config=_CONFIG)
    except ParseError as exc:
        return rejections.gs1_checked("GTIN", content, exc)
    return _scan((("01", gtin.as_gtin_14()),), expiry=None)


def _bare_sscc(content: str) -> Gs1Read | Rejection:
    try:
        sscc = Sscc.parse(content, config=_CONFIG)
    except ParseError as exc:
        return rejections.gs1_checked("SSCC", content, exc)
    return _scan((("00", sscc.value),), expiry=None)


def _validated(elements: Iterable[GS1ElementString]) -> Gs1Read | Rejection:
    values: dict[str, str] = {}
    expiry: str | None = None
    for element in elements:
        ai = element.ai.ai
        for kind, inner_error in (
            ("GTIN", element.gtin_error),
            ("SSCC", element.sscc_error),
            ("GLN", element.gln_error),
        ):
            if inner_error:
                return rejections.gs1_checked(kind, element.value, inner_error)
        if not element.value:
            return rejections.gs1_empty_value(element.ai)
        if values.setdefault(ai, element.value) != element.value:
            return rejections.gs1_repeated_ai(ai)
        if ai == "17" and element.date is not None:
            expiry = element.date.isoformat()
    if not values:
        return rejections.gs1_no_elements()
    return _scan(tuple(values.items()), expiry=expiry)


def _scan(elements: tuple[tuple[str, str], ...], *, expiry: str | None) -> Gs1Read:
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
    return Gs1Read(elements=elements, fields=tuple(fields), keys=tuple(keys))
