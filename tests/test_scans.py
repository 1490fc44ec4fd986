"""Scan interpretation: one table of reads and what each must mean, plus property tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config.scanners import StationRole
from agent.scanning.interpret import (
    REJECTED_RAW_MAX_BYTES,
    BadgeScan,
    Material,
    Receipt,
    Rejected,
    ScanEvent,
    Shipment,
    StationRules,
    WorkOrderScan,
    interpret,
)

IN, OUT, LINE = (
    StationRules(role) for role in (StationRole.INBOUND, StationRole.OUTBOUND, StationRole.LINE)
)


def read_at(raw: bytes, at: StationRules, *, error: str | None = None) -> ScanEvent:
    """What `raw` means at a station without line instructions: an event of its own."""
    result = interpret(raw, at, error=error)
    assert isinstance(result, Receipt | Shipment | Material | Rejected), result
    return result


GTIN = "09501101530003"  # valid check digit
BAD_GTIN = "09501101530004"
SSCC = "095011015300000010"  # valid check digit
BAD_SSCC = "095011015300000013"
TYPES = {"goods.received", "goods.shipped", "material.consumed", "scan.rejected"}


@dataclass(frozen=True)
class Read:
    """One row: the bytes read, and either the exact accepted data or the rejection."""

    raw: bytes
    role: StationRules = IN
    type: str = "goods.received"
    data: dict[str, Any] | None = None  # exact data of an accepted read
    reason: str | None = None  # a substring of a rejection's reason
    shown: str | None = None  # a rejection's escaped raw, exactly
    keys: tuple[tuple[str, str], ...] | None = None
    error: str | None = None


def accepted(read: bytes, role: StationRules, data: dict[str, Any], keys: Any = None) -> Read:
    kind = {IN: "goods.received", OUT: "goods.shipped", LINE: "material.consumed"}[role]
    return Read(read, role, kind, data=data, keys=keys)


def rejected(
    raw: bytes, reason: str, role: StationRules = IN, *, shown: str | None = None, **kw: Any
) -> Read:
    return Read(raw, role, "scan.rejected", reason=reason, shown=shown, **kw)


def gs1(raw: str, symbology: str, role: StationRules = IN, keys: Any = None, **fields: Any) -> Read:
    """An accepted GS1 read; `fields` hold `gs1` and the promoted fields."""
    return accepted(raw.encode(), role, {"raw": raw, "symbology": symbology, **fields}, keys)


def plain(raw: str, role: StationRules = IN, symbology: str = "unknown") -> Read:
    return accepted(raw.encode(), role, {"raw": raw, "symbology": symbology}, ())


FULL = {"01": GTIN, "10": "ABC", "21": "XYZ"}
FULL_FIELDS: dict[str, Any] = {"gs1": FULL, "gtin": GTIN, "lot": "ABC", "serial": "XYZ"}
FULL_KEYS = (
    ("gtin", GTIN),
    ("lot", "ABC"),
    ("gtin_lot", f"{GTIN}|ABC"),
    ("serial", f"{GTIN}|XYZ"),
)
DL = f"https://id.gs1.org/01/{GTIN}/10/ABC/21/S1?17=261200"

CASES = [
    # Each GS1 symbology identifier, and none; every role gives its event type.
    pytest.param(
        gs1(f"]C101{GTIN}10ABC\x1d21XYZ", "gs1-128", IN, FULL_KEYS, **FULL_FIELDS),
        id="gs1-128-inbound",
    ),
    pytest.param(
        gs1(f"]d201{GTIN}10ABC\x1d21XYZ", "gs1-datamatrix", LINE, **FULL_FIELDS), id="dm-line"
    ),
    pytest.param(gs1(f"]Q301{GTIN}10ABC\x1d21XYZ", "gs1-qr", OUT, **FULL_FIELDS), id="qr-outbound"),
    pytest.param(
        gs1(
            f"]e001{GTIN}17261231",
            "gs1-databar",
            gs1={"01": GTIN, "17": "261231"},
            gtin=GTIN,
            expiry="2026-12-31",
        ),
        id="databar-expiry",
    ),
    pytest.param(gs1(f"01{GTIN}10ABC\x1d21XYZ", "unknown", **FULL_FIELDS), id="no-prefix-with-gs"),
    pytest.param(
        gs1(f"\x1d01{GTIN}10ABC\x1d21XYZ", "unknown", **FULL_FIELDS), id="fnc1-sent-as-gs"
    ),
    pytest.param(gs1(f"]C101{GTIN}10ABC\x1d21XYZ\x1d", "gs1-128", **FULL_FIELDS), id="trailing-gs"),
    # Fixed-length AIs need no GS; a variable-length one needs GS before the next AI.
    pytest.param(
        gs1(
            f"]C101{GTIN}1726123110L1",
            "gs1-128",
            gs1={"01": GTIN, "17": "261231", "10": "L1"},
            gtin=GTIN,
            lot="L1",
            expiry="2026-12-31",
        ),
        id="fixed-length-without-gs",
    ),
    pytest.param(
        gs1(
            "]C110L1\x1d17261231",
            "gs1-128",
            gs1={"10": "L1", "17": "261231"},
            lot="L1",
            expiry="2026-12-31",
            keys=(("lot", "L1"),),
        ),
        id="variable-length-then-gs",
    ),
    pytest.param(
        gs1("]C110L117261231", "gs1-128", gs1={"10": "L117261231"}, lot="L117261231"),
        id="variable-length-without-gs-swallows-the-rest",
    ),
    pytest.param(
        gs1(f"(01){GTIN}(10)AB", "unknown", gs1={"01": GTIN, "10": "AB"}, gtin=GTIN, lot="AB"),
        id="hri",
    ),
    # GS1 Digital Link URIs.
    pytest.param(
        gs1(
            DL,
            "unknown",
            gs1={"01": GTIN, "10": "ABC", "21": "S1", "17": "261200"},
            gtin=GTIN,
            lot="ABC",
            serial="S1",
            expiry="2026-12-31",
        ),
        id="digital-link",
    ),
    pytest.param(
        gs1(f"]Q1https://id.gs1.org/01/{GTIN}", "qr", OUT, gs1={"01": GTIN}, gtin=GTIN),
        id="digital-link-in-plain-qr",
    ),
    pytest.param(
        gs1(
            f"]d2https://example.com/01/{GTIN}/10/L9",
            "gs1-datamatrix",
            gs1={"01": GTIN, "10": "L9"},
            gtin=GTIN,
            lot="L9",
        ),
        id="digital-link-in-gs1-datamatrix",
    ),
    pytest.param(
        rejected(f"https://id.gs1.org/01/{BAD_GTIN}".encode(), "GS1: Invalid GTIN check digit"),
        id="digital-link-bad-check-digit",
    ),
    pytest.param(
        rejected(b"]d2https://example.com/page", "GS1: invalid Digital Link URI"),
        id="gs1-datamatrix-url-without-key",
    ),
    pytest.param(plain("https://example.com/page"), id="ordinary-url-is-plain"),
    # Pallets: SSCC, content GTIN (02) and count (37); a bare SSCC.
    pytest.param(
        gs1(
            f"]C100{SSCC}02{GTIN}3748\x1d10LOT7",
            "gs1-128",
            OUT,
            (("gtin", GTIN), ("lot", "LOT7"), ("gtin_lot", f"{GTIN}|LOT7"), ("sscc", SSCC)),
            gs1={"00": SSCC, "02": GTIN, "37": "48", "10": "LOT7"},
            gtin=GTIN,
            lot="LOT7",
            sscc=SSCC,
            quantity=48,
        ),
        id="sscc-pallet-label",
    ),
    pytest.param(
        gs1(SSCC, "unknown", OUT, (("sscc", SSCC),), gs1={"00": SSCC}, sscc=SSCC),
        id="bare-sscc",
    ),
    pytest.param(
        gs1(
            f"]C101{GTIN}3012\x1d10L",
            "gs1-128",
            gs1={"01": GTIN, "30": "12", "10": "L"},
            gtin=GTIN,
            lot="L",
            quantity=12,
        ),
        id="variable-count-30",
    ),
    # Expiry: day 00 is the last day of the month.
    pytest.param(
        gs1(
            f"]C101{GTIN}17261200",
            "gs1-128",
            gs1={"01": GTIN, "17": "261200"},
            gtin=GTIN,
            expiry="2026-12-31",
        ),
        id="expiry-day-00",
    ),
    pytest.param(
        gs1(
            f"]C101{GTIN}17280200",
            "gs1-128",
            gs1={"01": GTIN, "17": "280200"},
            gtin=GTIN,
            expiry="2028-02-29",
        ),
        id="expiry-day-00-leap-february",
    ),
    # Bare GTINs (EAN/UPC): with and without identifier.
    pytest.param(
        gs1("]E09501101530003", "ean-13", gs1={"01": GTIN}, gtin=GTIN, keys=(("gtin", GTIN),)),
        id="ean-13",
    ),
    pytest.param(gs1("9501101530003", "unknown", gs1={"01": GTIN}, gtin=GTIN), id="bare-gtin-13"),
    pytest.param(
        gs1("]E496385074", "ean-8", gs1={"01": "00000096385074"}, gtin="00000096385074"),
        id="ean-8",
    ),
    pytest.param(
        gs1("036000291452", "unknown", gs1={"01": "00036000291452"}, gtin="00036000291452"),
        id="bare-upc-a",
    ),
    pytest.param(
        gs1("]E3950110153000312", "ean-13-addon", gs1={"01": GTIN}, gtin=GTIN),
        id="ean-13-with-addon",
    ),
    # GS1 validation failures.
    pytest.param(
        rejected(f"]C101{BAD_GTIN}10A".encode(), "GS1: Invalid GTIN check digit"),
        id="bad-gtin-check-digit",
    ),
    pytest.param(
        rejected(b"9501101530004", "GS1: Invalid GTIN check digit"), id="bad-bare-gtin-check-digit"
    ),
    pytest.param(
        rejected(b"]E09501101530004", "GS1: Invalid GTIN check digit"), id="bad-ean-13-check-digit"
    ),
    pytest.param(
        rejected(f"]C100{BAD_SSCC}".encode(), "GS1: Invalid SSCC check digit"),
        id="bad-sscc-check-digit",
    ),
    pytest.param(
        rejected(BAD_SSCC.encode(), "GS1: Invalid SSCC check digit"), id="bad-bare-sscc-check-digit"
    ),
    pytest.param(
        rejected(f"]C101{GTIN}17261331".encode(), "GS1: invalid value '261331' for AI (17)"),
        id="impossible-month-13",
    ),
    pytest.param(
        rejected(f"]C101{GTIN}17260230".encode(), "GS1: invalid value '260230' for AI (17)"),
        id="impossible-february-30",
    ),
    pytest.param(
        rejected(f"]C101{GTIN}10{'A' * 21}".encode(), "AI (10) BATCH/LOT is too long"),
        id="lot-over-20",
    ),
    pytest.param(
        rejected(f"]C110{'A' * 20}17261231".encode(), "AI (10) BATCH/LOT is too long"),
        id="lot-over-20-running-into-an-ai",
    ),
    pytest.param(
        rejected(f"]C101{GTIN}231234".encode(), "GS1: unknown application identifier"),
        id="unknown-ai",
    ),
    pytest.param(
        rejected(b"]C1HELLO", "GS1: unknown application identifier"), id="gs1-128-that-is-not-gs1"
    ),
    pytest.param(rejected(b"]C110AB\x1d10AC", "AI (10) appears twice"), id="ai-repeated"),
    pytest.param(rejected(b"]C110A\xc3\xa9", "AI (10) BATCH/LOT"), id="lot-invalid-character"),
    pytest.param(rejected(b"]C1", "no data after symbology identifier ]C1"), id="prefix-only"),
    # Decoding: control characters, UTF-8, length, emptiness, framing errors.
    pytest.param(
        rejected(b"AB\x07C", "control character 0x07 at position 2", shown="AB\\x07C"), id="bel"
    ),
    pytest.param(
        rejected(b"\x00ABC", "control character 0x00 at position 0", shown="\\x00ABC"), id="nul"
    ),
    pytest.param(
        rejected(b"]C1\x1b[31m", "control character 0x1b at position 3", shown="]C1\\x1b[31m"),
        id="esc",
    ),
    pytest.param(
        rejected(
            "A\u202eB".encode(),
            "non-printing character U+202E at position 1",
            shown="A\\xe2\\x80\\xaeB",
        ),
        id="bidi-override",
    ),
    pytest.param(
        rejected(b"A\\B\x07", "control character", shown="A\\\\B\\x07"), id="backslash-escaped"
    ),
    pytest.param(rejected(b"\xff\xfe", "not valid UTF-8", shown="\\xff\\xfe"), id="invalid-utf8"),
    pytest.param(
        rejected(
            b"A" * 513,
            "longer than 512 bytes (513)",
            shown="A" * REJECTED_RAW_MAX_BYTES + "...[313 more bytes]",
        ),
        id="over-long",
    ),
    pytest.param(rejected(b"", "empty", shown=""), id="empty"),
    pytest.param(rejected(b" \r\n", "empty", shown=""), id="whitespace-only"),
    pytest.param(
        rejected(
            b"PO-4711\r\n",
            "frame longer than 512 bytes",
            shown="PO-4711",
            error="frame longer than 512 bytes",
        ),
        id="driver-framing-error",
    ),
    # Plain barcodes: accepted as the role's type, raw as-is (the page escapes HTML itself).
    pytest.param(plain("HELLO-123"), id="plain-inbound"),
    pytest.param(plain("PO-4711", OUT), id="plain-outbound"),
    pytest.param(plain("HELLO-123", LINE), id="plain-line"),
    pytest.param(plain("<script>alert(1)</script>"), id="script-tag"),
    pytest.param(plain("<img src=x onerror=alert(1)>", OUT), id="img-onerror"),
    pytest.param(plain("<script>alert(1)</script>", LINE), id="script-tag-line"),
    pytest.param(plain("批次-7"), id="chinese-text"),
    pytest.param(plain("]C0HELLO", symbology="code-128"), id="plain-code-128"),
    pytest.param(plain("4711"), id="short-number-is-plain"),
    pytest.param(
        accepted(b"  HELLO\r\n", IN, {"raw": "HELLO", "symbology": "unknown"}, ()),
        id="surrounding-whitespace-stripped",
    ),
]


@pytest.mark.parametrize("read", CASES)
def test_read_at(read: Read) -> None:
    result = read_at(read.raw, read.role, error=read.error)
    assert result.type == read.type, result.data
    if read.data is not None:
        assert result.data == read.data
    else:
        assert read.reason is not None
        assert set(result.data) == {"raw", "reason", "reason_code", "reason_params"}
        assert read.reason in result.data["reason"]
        assert result.keys == ()
        if read.shown is not None:
            assert result.data["raw"] == read.shown
    if read.keys is not None:
        assert result.keys == read.keys


CODED: list[tuple[str, bytes, str | None, str, dict[str, Any]]] = [
    # (id, read, driver error, reason_code, reason_params)
    (
        "gtin-check-digit",
        f"]C101{BAD_GTIN}10A".encode(),
        None,
        "gs1.check_digit",
        {"kind": "GTIN", "value": BAD_GTIN, "expected": 3},
    ),
    (
        "bare-gtin-check-digit",
        BAD_GTIN[1:].encode(),
        None,
        "gs1.check_digit",
        {"kind": "GTIN", "value": BAD_GTIN[1:], "expected": 3},
    ),
    (
        "sscc-check-digit",
        f"]C100{BAD_SSCC}".encode(),
        None,
        "gs1.check_digit",
        {"kind": "SSCC", "value": BAD_SSCC, "expected": 0},
    ),
    (
        "digital-link-check-digit",
        f"https://id.gs1.org/01/{BAD_GTIN}".encode(),
        None,
        "gs1.check_digit",
        {"kind": "GTIN", "value": BAD_GTIN, "expected": 3},
    ),
    (
        "no-such-month",
        f"]C101{GTIN}17261331".encode(),
        None,
        "gs1.invalid_value",
        {"ai": "17", "title": "USE BY or EXPIRY", "format": "N2+N6", "value": "261331"},
    ),
    (
        "no-such-day",
        f"]C101{GTIN}17260230".encode(),
        None,
        "gs1.invalid_date",
        {"ai": "17", "title": "USE BY or EXPIRY", "value": "260230"},
    ),
    (
        "lot-with-a-bad-character",
        b"]C110A\xc3\xa9",
        None,
        "gs1.separator_missing",
        {"ai": "10", "title": "BATCH/LOT", "format": "N2+X..20", "rest": "\u00e9"},
    ),
    ("unknown-ai", b"]C1HELLO", None, "gs1.unknown_ai", {"at": "HELLO"}),
    ("repeated-ai", b"]C110AB\x1d10AC", None, "gs1.repeated_ai", {"ai": "10"}),
    ("no-data", b"]C1", None, "no_data", {"identifier": "]C1"}),
    ("control", b"AB\x07C", None, "control_character", {"char": "0x07", "position": 2}),
    (
        "bidi",
        "A\u202eB".encode(),
        None,
        "non_printing_character",
        {"char": "U+202E", "position": 1},
    ),
    ("utf8", b"\xff\xfe", None, "not_utf8", {"byte": "0xff", "position": 0}),
    ("too-long", b"A" * 513, None, "too_long", {"max": 512, "length": 513}),
    ("empty", b"  ", None, "empty", {}),
    ("frame-too-long", b"PO-4711", "frame longer than 512 bytes", "frame.too_long", {"max": 512}),
    ("frame-incomplete", b"PO-47", "incomplete frame (no terminator)", "frame.incomplete", {}),
]


@pytest.mark.parametrize(
    ("raw", "error", "code", "params"), [c[1:] for c in CODED], ids=[c[0] for c in CODED]
)
def test_a_rejection_has_a_stable_code_and_params_beside_its_english_reason(
    raw: bytes, error: str | None, code: str, params: dict[str, Any]
) -> None:
    """For a page or a downstream system to word the reason in another language."""
    result = read_at(raw, IN, error=error)
    assert result.type == "scan.rejected"
    assert (result.data["reason_code"], result.data["reason_params"]) == (code, params)
    assert result.data["reason"]  # the English sentence stays as it was


def test_max_length_is_configurable() -> None:
    short = StationRules(StationRole.INBOUND, max_length=4)
    assert read_at(b"HELLO", short).type == "scan.rejected"
    assert read_at(b"HELLO", StationRules(StationRole.INBOUND, max_length=5)).type == (
        "goods.received"
    )


def test_repeated_reads_do_not_share_data() -> None:
    raw = f"]C101{GTIN}10ABC".encode()
    first = read_at(raw, LINE)
    first.data["batch"] = "L1"
    first.data["gs1"]["10"] = "changed"
    second = read_at(raw, LINE)
    assert second.data["gs1"] == {"01": GTIN, "10": "ABC"}
    assert "batch" not in second.data


def check_invariants(raw: bytes, role: StationRules) -> None:
    result = read_at(raw, role)
    assert result.type in TYPES
    json.dumps(result.data)  # serializable as an envelope's data
    if result.type == "scan.rejected":
        shown = result.data["raw"]
        assert all(0x20 <= ord(char) < 0x7F for char in shown), shown
        assert result.data["reason"]
        assert result.data["reason_code"]
    else:
        assert result.data["raw"] == raw.strip().decode()


ROLES = st.sampled_from([IN, OUT, LINE])


@settings(deadline=None, database=None)
@given(raw=st.binary(max_size=600), role=ROLES)
def test_arbitrary_bytes_never_raise(raw: bytes, role: StationRules) -> None:
    check_invariants(raw, role)


@settings(deadline=None, database=None, max_examples=300)
@given(
    prefix=st.sampled_from(["", "]C1", "]d2", "]Q3", "]e0", "]E0", "]Q1", "https://id.gs1.org/"]),
    body=st.text(alphabet="0123456789ABCXYZ\x1d()/?=.-", max_size=80),
    role=ROLES,
)
def test_gs1_like_text_never_raises(prefix: str, body: str, role: StationRules) -> None:
    check_invariants((prefix + body).encode(), role)


# --- the whole meaning at a line: material into its line, work orders and badges ------------

FILLER = StationRules(LINE.role, line="filler", work_order_prefix="WO:", operator_prefix="OP:")


def test_a_material_names_the_line_it_goes_into() -> None:
    result = interpret(f"]C101{GTIN}10ABC".encode(), FILLER)
    assert isinstance(result, Material)
    assert result.line == "filler"
    assert result.type == "material.consumed"
    assert "batch" not in result.data, "the line's batch tracker adds it"
    assert interpret(b"PLAIN", LINE) == Material({"raw": "PLAIN", "symbology": "unknown"})


def test_work_orders_and_badges_at_a_line_are_their_own_meaning() -> None:
    assert interpret(b"WO:WO-17\r\n", FILLER) == WorkOrderScan("filler", "WO-17")
    assert interpret(b"OP:JANE", FILLER) == BadgeScan("filler", "JANE")
    refused = interpret(b"WO:" + b"X" * 65, FILLER)
    assert isinstance(refused, Rejected)
    assert refused.rejection.code == "text_refused"
    assert refused.data["reason"] == "work_order: longer than 64 characters (65)"
    # the bare prefix, a dock, or a node without a line: no instruction, a read like any other
    assert isinstance(interpret(b"WO:", FILLER), Material)
    assert isinstance(interpret(b"WO:WO-17", IN), Receipt)
    assert interpret(b"WO:WO-17", LINE) == Material({"raw": "WO:WO-17", "symbology": "unknown"})
