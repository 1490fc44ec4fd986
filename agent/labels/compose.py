"""What a label says: the batch label of a trace code and the pallet label of an SSCC, as ZPL.

`batch_label` and `sscc_label` check the code (`agent.labels.gs1`), compute the values of the
fields the template uses (barcode data in its symbol's syntax, text hex-escaped), and fill the
template: the given one, or the built-in one. `context` fills the optional text fields
(`CONTEXT_FIELDS`: site, node, line, product, work order, quantity); a missing one is empty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.labels.builtin import BATCH_ONE_SYMBOL, BATCH_TWO_SYMBOLS, SSCC
from agent.labels.errors import CodeError, LabelError
from agent.labels.gs1 import Gs1Code
from agent.labels.templates import (
    CONTEXT_FIELDS,
    LabelKind,
    LabelTemplate,
    text_field,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

WIDE = 1 << 16  # no width known for a template field: GS1's character limit alone applies

BUILTIN_BATCH_ONE = LabelTemplate.parse(
    BATCH_ONE_SYMBOL, kind=LabelKind.BATCH, name="built-in batch label"
)
BUILTIN_BATCH_TWO = LabelTemplate.parse(
    BATCH_TWO_SYMBOLS, kind=LabelKind.BATCH, name="built-in batch label (two GS1-128)"
)
BUILTIN_SSCC = LabelTemplate.parse(SSCC, kind=LabelKind.SSCC, name="built-in SSCC label")


def batch_label(
    trace_code: str,
    *,
    template: LabelTemplate | None = None,
    context: Mapping[str, str] | None = None,
) -> bytes:
    """The ZPL job of a batch label for `trace_code` (a GS1 element string, `(01)…(21)…`)."""
    code = Gs1Code.parse(trace_code)
    if template is None:
        template = BUILTIN_BATCH_ONE if _fits_one(code) else BUILTIN_BATCH_TWO
    _check_kind(template, LabelKind.BATCH)

    single = "trace_code_gs1_128"
    pair = (f"{single}_1", f"{single}_2")

    def parts() -> tuple[Gs1Code, Gs1Code]:  # one cut for both symbols, made for the narrower
        return code.split(max_modules=min(_room(template, name) for name in pair))

    def date(ai: str) -> Callable[[], str]:
        return lambda: text_field(ai, d.isoformat() if (d := code.dates.get(ai)) else "")

    def text(ai: str) -> Callable[[], str]:
        return lambda: text_field(ai, code.value(ai) or "")

    fields: dict[str, Callable[[], str]] = {
        "trace_code": lambda: text_field("trace code", code.hri),
        "trace_code_datamatrix": code.datamatrix,
        single: lambda: _symbol(code, template, single),
        f"{single}_hri": lambda: text_field("trace code", code.hri),
        pair[0]: lambda: _symbol(parts()[0], template, pair[0]),
        f"{pair[0]}_hri": lambda: text_field("trace code", parts()[0].hri),
        pair[1]: lambda: _symbol(parts()[1], template, pair[1]),
        f"{pair[1]}_hri": lambda: text_field("trace code", parts()[1].hri),
        "gtin": text("01"),
        "lot": text("10"),
        "serial": text("21"),
        "date": date("11"),
        "expiry": date("17"),
    }
    return _fill(template, fields, context)


def sscc_label(
    sscc: str,
    *,
    template: LabelTemplate | None = None,
    context: Mapping[str, str] | None = None,
) -> bytes:
    """The ZPL job of a pallet label for an SSCC (18 digits with a valid check digit)."""
    code = Gs1Code.sscc(sscc)
    template = template or BUILTIN_SSCC
    _check_kind(template, LabelKind.SSCC)
    fields: dict[str, Callable[[], str]] = {
        "sscc": lambda: sscc,
        "sscc_hri": lambda: code.hri,
        "sscc_gs1_128": lambda: _symbol(code, template, "sscc_gs1_128"),
    }
    return _fill(template, fields, context)


def _fits_one(code: Gs1Code) -> bool:
    try:
        code.gs1_128(max_modules=_room(BUILTIN_BATCH_ONE, "trace_code_gs1_128"))
    except CodeError:
        return False
    return True


def _room(template: LabelTemplate, name: str) -> int:
    return template.max_modules(name) or WIDE


def _symbol(code: Gs1Code, template: LabelTemplate, name: str) -> str:
    return code.gs1_128(max_modules=_room(template, name)).field_data


def _check_kind(template: LabelTemplate, kind: LabelKind) -> None:
    if template.kind is not kind:
        raise LabelError(f"{template.name} is a {template.kind} label, not a {kind} label")


def _fill(
    template: LabelTemplate,
    fields: Mapping[str, Callable[[], str]],
    context: Mapping[str, str] | None,
) -> bytes:
    context = context or {}
    stray = sorted(context.keys() - CONTEXT_FIELDS)
    if stray:
        raise LabelError(f"no such label context field(s): {stray}")
    values = {}
    for name in template.fields:  # only what the template shows: an unused symbol cannot fail
        maker = fields.get(name)
        values[name] = maker() if maker else text_field(name, context.get(name, ""))
    return template.fill(values)
