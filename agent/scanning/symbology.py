"""Symbology identifiers (ISO/IEC 15424 ``]Xm`` prefixes) and their stable names in events.

The ``symbology`` field of a scan event is one of these names; downstream systems may rely on them:

==================  ==========================================================
name                scanner prefix
==================  ==========================================================
``gs1-128``         ``]C1``
``gs1-datamatrix``  ``]d2``
``gs1-qr``          ``]Q3``
``gs1-databar``     ``]e0``
``gs1-composite``   ``]e1``, ``]e2``
``ean-13``          ``]E0`` (EAN-13, UPC-A, UPC-E)
``ean-13-addon``    ``]E3`` (EAN-13/UPC with a 2- or 5-digit add-on)
``ean-addon``       ``]E1``, ``]E2`` (an add-on symbol on its own)
``ean-8``           ``]E4``
``itf-14``          ``]I1``
``code-128``        ``]C0``, ``]C2``, ``]C4`` (plain Code 128)
``datamatrix``      ``]d0``, ``]d1``, ... (plain Data Matrix)
``qr``              ``]Q0``, ``]Q1``, ... (plain QR Code)
``code-39``, ``code-93``, ``code-11``, ``codabar``, ``itf``, ``pdf417``, ``aztec``, ``maxicode``,
``telepen``, ``code-one``, ``code-16k``, ``code-49``, ``msi``, ``plessey``,
``codablock``, ``anker``, ``channel-code``, ``posicode``, ``supercode``, ``straight-2of5``,
``ocr``, ``other``, ``non-barcode``, ``system-expansion``: the remaining ISO symbologies
``unknown``         no prefix (or one the scanner sent that is not a valid identifier)
==================  ==========================================================

Parsing of the prefix itself is biip's (`SymbologyIdentifier.extract`); this module only names it.
"""

from __future__ import annotations

from biip import ParseError
from biip.symbology import GS1Symbology, ISOSymbology, SymbologyIdentifier

UNKNOWN = "unknown"

_GS1_NAMES: dict[GS1Symbology, str] = {
    GS1Symbology.GS1_128: "gs1-128",
    GS1Symbology.GS1_DATAMATRIX: "gs1-datamatrix",
    GS1Symbology.GS1_QR_CODE: "gs1-qr",
    GS1Symbology.GS1_DATABAR: "gs1-databar",
    GS1Symbology.GS1_COMPOSITE_WITH_SEPARATOR_CHAR: "gs1-composite",
    GS1Symbology.GS1_COMPOSITE_WITH_ESCAPE_CHAR: "gs1-composite",
    GS1Symbology.EAN_13: "ean-13",
    GS1Symbology.EAN_13_WITH_ADD_ON: "ean-13-addon",
    GS1Symbology.EAN_TWO_DIGIT_ADD_ON: "ean-addon",
    GS1Symbology.EAN_FIVE_DIGIT_ADD_ON: "ean-addon",
    GS1Symbology.EAN_8: "ean-8",
    GS1Symbology.ITF_14: "itf-14",
}

_ISO_NAMES: dict[ISOSymbology, str] = {
    ISOSymbology.CODE_39: "code-39",
    ISOSymbology.TELEPEN: "telepen",
    ISOSymbology.CODE_128: "code-128",
    ISOSymbology.CODE_ONE: "code-one",
    ISOSymbology.EAN_UPC: "ean-upc",
    ISOSymbology.CODABAR: "codabar",
    ISOSymbology.CODE_93: "code-93",
    ISOSymbology.CODE_11: "code-11",
    ISOSymbology.ITF: "itf",
    ISOSymbology.CODE_16K: "code-16k",
    ISOSymbology.PDF417: "pdf417",
    ISOSymbology.MSI: "msi",
    ISOSymbology.ANKER: "anker",
    ISOSymbology.CODABLOCK: "codablock",
    ISOSymbology.PLESSEY_CODE: "plessey",
    ISOSymbology.QR_CODE: "qr",
    ISOSymbology.STRAIGHT_2_OF_5_WITH_2_BAR_START_STOP_CODE: "straight-2of5",
    ISOSymbology.STRAIGHT_2_OF_5_WITH_3_BAR_START_STOP_CODE: "straight-2of5",
    ISOSymbology.CODE_49: "code-49",
    ISOSymbology.MAXICODE: "maxicode",
    ISOSymbology.OTHER_BARCODE: "other",
    ISOSymbology.SYSTEM_EXPANSION: "system-expansion",
    ISOSymbology.NON_BARCODE: "non-barcode",
    ISOSymbology.CHANNEL_CODE: "channel-code",
    ISOSymbology.DATA_MATRIX: "datamatrix",
    ISOSymbology.RSS_EAN_UCC_COMPOSITE: "gs1-databar",
    ISOSymbology.OCR: "ocr",
    ISOSymbology.POSICODE: "posicode",
    ISOSymbology.SUPERCODE: "supercode",
    ISOSymbology.AZTEC_CODE: "aztec",
}

# Symbologies whose data is GS1 element strings (FNC1 mode): their content must validate as GS1.
GS1_MESSAGE_SYMBOLOGIES = frozenset(
    {
        GS1Symbology.GS1_128,
        GS1Symbology.GS1_DATAMATRIX,
        GS1Symbology.GS1_QR_CODE,
        GS1Symbology.GS1_DATABAR,
        GS1Symbology.GS1_COMPOSITE_WITH_SEPARATOR_CHAR,
        GS1Symbology.GS1_COMPOSITE_WITH_ESCAPE_CHAR,
    }
)
# Symbologies that carry nothing but a GTIN (EAN/UPC, ITF-14): their content must be a valid GTIN.
GTIN_SYMBOLOGIES = frozenset(
    {
        GS1Symbology.EAN_13,
        GS1Symbology.EAN_13_WITH_ADD_ON,
        GS1Symbology.EAN_8,
        GS1Symbology.ITF_14,
    }
)


# Identifiers already parsed, by their three characters (biip takes microseconds for each, and a
# station sees the same few prefixes all day). Bounded: the prefix is untrusted input.
_KNOWN: dict[str, SymbologyIdentifier] = {}
_KNOWN_MAX = 512
_PREFIX_LENGTH = 3  # "]" + code character + one modifier character


def split_identifier(text: str) -> tuple[SymbologyIdentifier | None, str]:
    """Split a decoded scan into its symbology identifier (if it has a valid one) and its data."""
    if len(text) < _PREFIX_LENGTH or text[0] != "]":
        return None, text
    known = _KNOWN.get(text[:_PREFIX_LENGTH])
    if known is not None:
        return known, text[_PREFIX_LENGTH:]
    try:
        identifier = SymbologyIdentifier.extract(text)
    except (ParseError, ValueError, IndexError):
        # Not an ISO/IEC 15424 identifier after all (biip indexes and int()s the modifier
        # characters): the "]" is just data of a plain barcode.
        return None, text
    # (a system expansion prefix's length depends on its modifiers: not cached)
    if identifier.iso_symbology != ISOSymbology.SYSTEM_EXPANSION and len(_KNOWN) < _KNOWN_MAX:
        _KNOWN[identifier.value] = identifier
    return identifier, text[len(identifier) :]


def symbology_name(identifier: SymbologyIdentifier | None) -> str:
    """Give the stable event name of a symbology identifier (see the table above)."""
    if identifier is None:
        return UNKNOWN
    if identifier.gs1_symbology is not None:
        return _GS1_NAMES.get(identifier.gs1_symbology, UNKNOWN)
    return _ISO_NAMES.get(identifier.iso_symbology, UNKNOWN)
