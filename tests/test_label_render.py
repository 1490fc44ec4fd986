"""Labels proven by a barcode reader: rendered by a ZPL renderer, read back by zxing-cpp.

zplkit draws the job as a printer would (its `zd621` profile follows the firmware of a current
Zebra desktop printer, `specification` the ZPL manual); zxing-cpp reads every symbol. A GS1
DataMatrix reads as `]d2` and a GS1-128 as `]C1`, with GS where the symbol has an FNC1
separator, so FNC1 placement and the order of the elements are proven on the picture.
"""

from __future__ import annotations

import pytest
from biip.gs1_messages import GS1Message
from zpl_fields import Decoded, Profile, decode

from agent.labels import LabelKind, LabelTemplate, batch_label, sscc_label

CODE = "(01)09501101530003(10)LINE32611241(11)261124(21)000001"
LONG_CODE = "(01)09501101530003(10)filler-a26112401(11)261124(21)000001"
SSCC = "095011010000000018"
PROFILES: list[Profile] = ["zd621", "specification"]


def elements(hri: str) -> list[tuple[str, str]]:
    return [(es.ai.ai, es.value) for es in GS1Message.parse_hri(hri).element_strings]


def read(symbol: Decoded) -> list[tuple[str, str]]:
    """The symbol's content as a host parses it: biip on the data with GS separators."""
    return [
        (es.ai.ai, es.value) for es in GS1Message.parse(symbol.content.decode()).element_strings
    ]


def gs1(symbol: Decoded, fmt: str, identifier: str) -> None:
    assert (symbol.format, symbol.symbology_identifier, symbol.gs1) == (fmt, identifier, True)


@pytest.mark.parametrize("profile", PROFILES)
def test_batch_label_reads_back(profile: Profile) -> None:
    dm, bc = decode(batch_label(CODE), profile)
    gs1(dm, "Data Matrix", "]d2")
    gs1(bc, "Code 128", "]C1")
    expected = b"0109501101530003" + b"10LINE32611241\x1d" + b"11261124" + b"21000001"
    assert dm.content == bc.content == expected
    assert read(dm) == read(bc) == elements(CODE)


@pytest.mark.parametrize("profile", PROFILES)
def test_long_batch_code_reads_back_from_two_gs1_128(profile: Profile) -> None:
    dm, first, second = decode(batch_label(LONG_CODE), profile)
    gs1(dm, "Data Matrix", "]d2")
    gs1(first, "Code 128", "]C1")
    gs1(second, "Code 128", "]C1")
    assert read(dm) == elements(LONG_CODE)
    assert read(first) + read(second) == elements(LONG_CODE)


@pytest.mark.parametrize("profile", PROFILES)
def test_sscc_label_reads_back(profile: Profile) -> None:
    [bc] = decode(sscc_label(SSCC), profile)
    gs1(bc, "Code 128", "]C1")
    assert bc.content == b"00" + SSCC.encode()
    assert read(bc) == [("00", SSCC)]


def test_escaped_characters_and_fnc1_in_the_middle_read_back() -> None:
    code = "(01)09501101530003(10)A_B>c(11)261124(21)X-7"
    template = LabelTemplate.parse(
        "^XA^CI28^PW812^LL609"
        "^FO30,30^BXN,6,200,0,0,6,_,1^FH\\^FD{trace_code_datamatrix}^FS"
        "^FO20,250^BY2^BCN,120,N,N,N,N^FH\\^FD{trace_code_gs1_128}^FS"
        "^FO30,400^A0N,24,24^FH\\^FD{product} {trace_code}^FS^XZ",
        kind=LabelKind.BATCH,
        name="custom",
    )
    job = batch_label(code, template=template, context={"product": "Cheese ^XZ ~JA \\"})
    dm, bc = decode(job)
    gs1(dm, "Data Matrix", "]d2")
    gs1(bc, "Code 128", "]C1")
    expected = b"0109501101530003" + b"10A_B>c\x1d" + b"11261124" + b"21X-7"
    assert dm.content == bc.content == expected
    assert read(bc) == elements(code)


def test_without_the_escape_character_in_bx_current_firmware_prints_no_gs1() -> None:
    """Why templates must set `^BX`'s escape: current firmware defaults to `~`, not `_`."""
    job = b"^XA^FO30,30^BXN,6,200^FH\\^FD_10109501101530003^FS^XZ"
    [dm] = decode(job, "zd621")
    assert (dm.symbology_identifier, dm.gs1) == ("]d1", False)  # plain data, `_1` as text
    assert dm.content == b"_10109501101530003"
    [dm] = decode(job, "specification")  # the manual's `_`: GS1 on paper, not on a printer
    assert (dm.symbology_identifier, dm.gs1) == ("]d2", True)
