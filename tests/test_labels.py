"""Label composition: the ZPL read back field by field and checked with biip against the code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from biip.gs1_messages import GS1Message
from hypothesis import given
from hypothesis import strategies as st
from zpl_fields import ZplField, code128_content, datamatrix_content, read_fields

from agent.labels import (
    CodeError,
    LabelError,
    LabelKind,
    LabelTemplate,
    TemplateError,
    batch_label,
    builtin,
    check_template,
    sscc_label,
    unknown_fields,
)
from agent.labels.code128 import FNC1, encode_code128
from agent.labels.gs1 import GS1_CHARSET_82, MAX_GS1_128_CHARS, Gs1Code

ROOT = Path(__file__).resolve().parent.parent
CODE = "(01)09501101530003(10)LINE32611241(11)261124(21)000001"
LONG_CODE = "(01)09501101530003(10)filler-a26112401(11)261124(21)000001"
SSCC = "095011010000000018"


def elements(hri: str) -> list[tuple[str, str]]:
    return [(es.ai.ai, es.value) for es in GS1Message.parse_hri(hri).element_strings]


def parsed(content: bytes) -> list[tuple[str, str]]:
    """What a scanner's host would make of the symbol: biip on the data with GS separators."""
    return [(es.ai.ai, es.value) for es in GS1Message.parse(content.decode()).element_strings]


def canonical(hri: str) -> bytes:
    """biip's own GS-separated form: FNC1 only after variable-length values, never at the end."""
    return GS1Message.parse_hri(hri).value.encode()


def barcodes(job: bytes, kind: str) -> list[ZplField]:
    return [f for f in read_fields(job) if f.barcode == kind]


def texts(job: bytes) -> list[str]:
    return [f.text for f in read_fields(job) if f.barcode is None]


def test_batch_label_carries_the_code_as_datamatrix_and_gs1_128() -> None:
    job = batch_label(CODE)
    [dm] = barcodes(job, "BX")
    assert dm.params("BX") == ["N", "6", "200", "0", "0", "6", "_", "1"]
    assert dm.params("FH") == ["\\"]
    gs1, content = datamatrix_content(dm)
    assert gs1
    assert content == canonical(CODE)
    assert parsed(content) == elements(CODE)
    [bc] = barcodes(job, "BC")
    assert bc.params("BC") == ["N", "120", "N", "N", "N", "N"]
    assert bc.data.startswith(b">;>8")  # start C (the GTIN's digits), FNC1: a GS1-128
    gs1, content = code128_content(bc)
    assert gs1
    assert content == canonical(CODE)
    assert parsed(content) == elements(CODE)
    assert texts(job) == [
        "GTIN 09501101530003",
        "LOT LINE32611241",
        "PROD 2026-11-24",
        "SERIAL 000001",
        CODE,
    ]


def test_fnc1_follows_a_variable_length_value_only_when_another_element_comes() -> None:
    # (10) is variable and followed by (11): FNC1; (21) is last: none; (01), (11) fixed: none
    job = batch_label(CODE)
    for content in (
        datamatrix_content(barcodes(job, "BX")[0])[1],
        code128_content(barcodes(job, "BC")[0])[1],
    ):
        assert content == b"010950110153000310LINE32611241\x1d1126112421000001"


def test_a_code_too_long_for_one_gs1_128_is_cut_between_elements() -> None:
    job = batch_label(LONG_CODE)
    assert len(Gs1Code.parse(LONG_CODE).data) - 1 > MAX_GS1_128_CHARS
    symbols = barcodes(job, "BC")
    assert len(symbols) == 2
    found = []
    for symbol in symbols:
        gs1, content = code128_content(symbol)
        assert gs1
        found += parsed(content)
    assert found == elements(LONG_CODE)  # every element once, in order
    [dm] = barcodes(job, "BX")
    assert parsed(datamatrix_content(dm)[1]) == elements(LONG_CODE)
    assert texts(job)[-2:] == ["(01)09501101530003(10)filler-a26112401", "(11)261124(21)000001"]


def test_sscc_label() -> None:
    job = sscc_label(SSCC)
    [bc] = barcodes(job, "BC")
    assert bc.params("BY") == ["4"]
    gs1, content = code128_content(bc)
    assert gs1
    assert parsed(content) == [("00", SSCC)]
    assert bc.data == b">;>800095011010000000018"  # all digits: subset C throughout
    assert texts(job) == ["SSCC", SSCC, f"(00){SSCC}"]


@pytest.mark.parametrize(
    ("sscc", "why"),
    [
        ("095011010000000017", "check digit"),
        ("09501101000000001", "18 digits"),
        ("09501101000000001A", "18 digits"),
        ("\uff10" * 18, "18 digits"),  # fullwidth digits are not ASCII digits
    ],
)
def test_a_bad_sscc_is_refused(sscc: str, why: str) -> None:
    with pytest.raises(CodeError, match=why):
        sscc_label(sscc)


@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("(01)09501101530004(21)1", "check digit"),
        ("01095011015300032112", "not a valid GS1"),
        ("(01)09501101530003(10)A B", "not a valid GS1"),
        ("", "1 to 200"),
        ("(01)09501101530003(21)" + "1" * 300, "1 to 200"),
    ],
)
def test_a_bad_trace_code_is_refused(code: str, why: str) -> None:
    with pytest.raises(CodeError, match=why):
        batch_label(code)


def test_gs1_characters_that_mean_something_to_zpl_are_escaped_in_the_symbols() -> None:
    code = "(01)09501101530003(10)A_B>C(21)7"  # `_` and `>` are in GS1's 82-character set
    job = batch_label(code)
    dm = barcodes(job, "BX")[0]
    assert b"A__B>C" in dm.data
    assert datamatrix_content(dm)[1] == canonical(code)
    bc = barcodes(job, "BC")[0]
    assert b"A_B>0C" in bc.data
    assert code128_content(bc)[1] == canonical(code)


def test_context_text_cannot_inject_zpl() -> None:
    evil = "L1^XZ^XA^FO0,0^GB812,609,300^FS~JA\\5E"
    template = LabelTemplate.parse(
        "^XA^CI28^FO10,10^A0N,30,30^FH\\^FD{line} / {product}^FS^XZ",
        kind=LabelKind.BATCH,
        name="t",
    )
    job = batch_label(CODE, template=template, context={"line": evil, "product": "Käse\t1"})
    [field] = read_fields(job)  # one ^XA, one ^XZ, no ~ anywhere: asserted by the reader
    assert field.text == f"{evil} / Käse 1"  # the control character became a space


def test_context_is_checked() -> None:
    with pytest.raises(LabelError, match="no such label context"):
        batch_label(CODE, context={"colour": "red"})
    with pytest.raises(LabelError, match="200"):
        batch_label(CODE, context={"product": "x" * 201}, template=_template("{product}"))


def _template(text_field: str, kind: LabelKind = LabelKind.BATCH) -> LabelTemplate:
    return LabelTemplate.parse(
        f"^XA^FO10,10^A0N,30,30^FH\\^FD{text_field}^FS^XZ", kind=kind, name="t"
    )


def test_a_template_with_one_gs1_128_places_fnc1_between_elements() -> None:
    template = LabelTemplate.parse(
        "^XA^PW812^FO20,20^BY2^BCN,100,N,N,N,N^FH\\^FD{trace_code_gs1_128}^FS^XZ",
        kind=LabelKind.BATCH,
        name="one symbol",
    )
    code = "(01)09501101530003(10)ABC(11)261124(21)XYZ"
    [bc] = barcodes(batch_label(code, template=template), "BC")
    gs1, content = code128_content(bc)
    assert gs1
    assert content == b"0109501101530003" + b"10ABC\x1d" + b"11261124" + b"21XYZ"


def test_a_gs1_128_wider_than_its_label_is_refused() -> None:
    template = LabelTemplate.parse(
        "^XA^PW400^FO20,20^BY3^BCN,100,N,N,N,N^FH\\^FD{trace_code_gs1_128}^FS^XZ",
        kind=LabelKind.BATCH,
        name="narrow",
    )
    assert template.max_modules("trace_code_gs1_128") == (400 - 20) // 3
    with pytest.raises(CodeError, match="modules wide"):
        batch_label(CODE, template=template)


def test_the_builtin_templates_are_clean() -> None:
    assert check_template(builtin.BATCH_ONE_SYMBOL, LabelKind.BATCH) == []
    assert check_template(builtin.BATCH_TWO_SYMBOLS, LabelKind.BATCH) == []
    assert check_template(builtin.SSCC, LabelKind.SSCC) == []


def test_unknown_fields_are_listed() -> None:
    text = "^XA^FH\\^FD{lot} {colour} {sscc} {Lot}^FS^XZ"
    assert unknown_fields(text, LabelKind.BATCH) == ["Lot", "colour", "sscc"]
    assert unknown_fields(text, LabelKind.SSCC) == ["Lot", "colour", "lot"]
    problems = check_template(text, LabelKind.BATCH)
    assert problems[0].startswith("unknown field(s) Lot, colour, sscc (a batch label knows ")
    with pytest.raises(TemplateError) as caught:
        LabelTemplate.parse(text, kind=LabelKind.BATCH, name="mine.zpl")
    assert caught.value.problems == problems
    assert str(caught.value).startswith("label template mine.zpl: unknown field(s)")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("^XA^FO1,1^FD{lot}^FS^XZ", "{lot} needs ^FH\\ before its ^FD"),
        ("^XA^FO1,1^FH^FD{lot}^FS^XZ", "{lot} needs ^FH\\ before its ^FD"),
        ("^XA^FO1,{lot}^FH\\^FDx^FS^XZ", "{lot} must be inside ^FD field data"),
        ("^XA^FH\\^FD{lot}^XZ", "{lot} must be inside ^FD field data closed by ^FS"),
        ("^XA^FH\\^FDx^FS^FO{lot},1^FS^XZ", "{lot} must be inside ^FD field data"),
        (
            "^XA^BXN,6,200^FH\\^FD{trace_code_datamatrix}^FS^XZ",  # firmware default escape: ~
            "{trace_code_datamatrix} must be in a ^BX with quality 200 and escape _",
        ),
        (
            "^XA^BXN,6,140,0,0,6,_^FH\\^FD{trace_code_datamatrix}^FS^XZ",
            "{trace_code_datamatrix} must be in a ^BX with quality 200 and escape _",
        ),
        (
            "^XA^BCN,100,N,N,N,D^FH\\^FD{trace_code_gs1_128}^FS^XZ",
            "{trace_code_gs1_128} must be in a ^BC in mode N",
        ),
        (
            "^XA^BCN,100,N,N,Y,N^FH\\^FD{trace_code_gs1_128}^FS^XZ",
            "{trace_code_gs1_128} must be in a ^BC in mode N, no UCC check digit",
        ),
        (
            "^XA^BXN,6,200,0,0,6,_^FH\\^FD{trace_code_gs1_128}^FS^XZ",
            "{trace_code_gs1_128} must be in a ^BC",
        ),
        ("^XA^BCN,100^FH\\^FD{lot}^FS^XZ", "{lot} is text: it cannot be barcode data (^BC)"),
        ("^XA^FH\\^FD{lot}^FS^XZ^XA^XZ", "must hold exactly one label format"),
        ("^FH\\^FD{lot}^FS", "must hold exactly one label format"),
        ("^XA^CC+^FH\\^FD{lot}^FS^XZ", "changes a command prefix"),
        ("~CT+^XA^FH\\^FD{lot}^FS^XZ", "changes a command prefix"),
    ],
)
def test_template_problems(text: str, problem: str) -> None:
    problems = check_template(text, LabelKind.BATCH)
    assert any(p.startswith(problem) for p in problems), problems


def test_a_template_may_use_a_field_twice_and_lowercase_commands() -> None:
    template = LabelTemplate.parse(
        "^xa^fo1,1^fh\\^fd{lot} {lot}^fs^fo1,40^fh\\^fd{serial}^fs^xz",
        kind=LabelKind.BATCH,
        name="t",
    )
    assert template.fields == {"lot", "serial"}
    assert batch_label(CODE, template=template) == (
        b"^xa^fo1,1^fh\\^fdLINE32611241 LINE32611241^fs^fo1,40^fh\\^fd000001^fs^xz"
    )


def test_a_label_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(LabelError, match="is a sscc label, not a batch label"):
        batch_label(CODE, template=_template("{sscc}", LabelKind.SSCC))


def test_template_files(tmp_path: Path) -> None:
    good = tmp_path / "batch.zpl"
    good.write_text(builtin.BATCH_ONE_SYMBOL.replace("PROD", "Hergestellt"), encoding="utf-8")
    template = LabelTemplate.load(good, kind=LabelKind.BATCH)
    assert b"Hergestellt 2026-11-24" in batch_label(CODE, template=template)
    with pytest.raises(TemplateError, match="cannot be read"):
        LabelTemplate.load(tmp_path / "missing.zpl", kind=LabelKind.BATCH)
    big = tmp_path / "big.zpl"
    big.write_bytes(b"^XA" + b" " * 70_000 + b"^XZ")
    with pytest.raises(TemplateError, match="larger than 65536 bytes"):
        LabelTemplate.load(big, kind=LabelKind.BATCH)
    latin1 = tmp_path / "latin1.zpl"
    latin1.write_bytes("^XA^FDKäse^FS^XZ".encode("latin-1"))
    with pytest.raises(TemplateError, match="not UTF-8"):
        LabelTemplate.load(latin1, kind=LabelKind.BATCH)


@pytest.mark.parametrize(
    ("data", "codewords"),
    [
        (FNC1 + "00" + SSCC, 11),  # FNC1 and ten digit pairs: subset C throughout
        (FNC1 + "12345", 5),  # FNC1, 12, 34, CODE B, 5 (a digit is never left unpaired in C)
        (FNC1 + "10AB", 5),  # FNC1, 10, CODE B, A, B
        (FNC1 + "10A1234", 7),  # FNC1, 10, CODE B, A, CODE C, 12, 34
        (FNC1 + "10A123", 7),  # FNC1, 10, CODE B, A, 1, 2, 3 (a switch for one pair does not pay)
    ],
)
def test_code128_uses_the_fewest_symbol_characters(data: str, codewords: int) -> None:
    symbol = encode_code128(data)
    assert symbol.codewords == codewords
    _, content = code128_content(ZplField([("BC", "N,100,N,N,N,N")], symbol.field_data.encode()))
    assert content == data[1:].encode().replace(FNC1.encode(), b"\x1d")


@given(st.text(alphabet=[*sorted(GS1_CHARSET_82), FNC1], min_size=1, max_size=60))
def test_code128_round_trip(text: str) -> None:
    data = FNC1 + text
    symbol = encode_code128(data)
    gs1, content = code128_content(ZplField([("BC", "N,100,N,N,N,N")], symbol.field_data.encode()))
    assert gs1
    assert content == text.encode()
    assert symbol.codewords <= len(data) + 1  # never worse than all subset B (plus one switch)


def test_code128_refuses_what_zpl_would_misread() -> None:
    for bad in ("^", "~", "\\", "é", "\n"):
        with pytest.raises(CodeError, match="cannot be encoded"):
            encode_code128(FNC1 + "10" + bad)
    with pytest.raises(CodeError, match="needs data"):
        encode_code128("")


def test_labels_import_nothing_else_of_the_agent() -> None:
    """Until the agent's reorganisation, `agent.labels` stands alone (and never needs drivers)."""
    for path in sorted((ROOT / "agent" / "labels").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top != "drivers", f"{path.name} imports {name}"
                assert top != "agent" or name.startswith("agent.labels"), (
                    f"{path.name} imports {name}"
                )
