"""Trace codes: composing a batch's GS1 element string from the template, and proving it.

The code is composed from `line.trace_template` (default
`(01){gtin}(10){lot}(11){date:%y%m%d}(21){serial}`), parsed back through biip, and accepted only
if it is a valid GS1 message (every AI's pattern, check digits of GTINs, SSCCs and GLNs) whose
GTIN, lot and serial are the batch's own. The GS1 Digital
Link URI is biip's rendering of the same message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import biip
from biip.gs1_messages import GS1Message

if TYPE_CHECKING:
    from datetime import date


class TraceCodeError(Exception):
    """The template does not make a valid GS1 code for this batch."""


@dataclass(frozen=True, slots=True)
class TraceCode:
    """A composed and verified trace code."""

    hri: str  # human-readable element string, "(01)...(10)...(11)...(21)..."
    digital_link: str


def compose(
    template: str, *, gtin: str, lot: str, serial: str, day: date, node: str, site: str
) -> TraceCode:
    """Compose the code of one batch and verify it; raises `TraceCodeError`."""
    try:
        hri = template.format(gtin=gtin, lot=lot, serial=serial, date=day, node=node, site=site)
    except (KeyError, ValueError, IndexError) as exc:
        raise TraceCodeError(f"trace_template cannot be filled: {exc}") from exc
    try:
        message = GS1Message.parse_hri(hri)
        link = message.as_gs1_digital_link_uri().value
    except biip.ParseError as exc:
        raise TraceCodeError(f"trace code {hri!r} is not valid GS1: {exc}") from exc
    for es in message.element_strings:  # biip records a bad check digit instead of raising
        inner_error = es.gtin_error or es.sscc_error or es.gln_error
        if inner_error:
            raise TraceCodeError(f"trace code {hri!r} is not valid GS1: {inner_error}")
    found = {es.ai.ai: es.value for es in message.element_strings}
    expected = {"01": gtin, "10": lot, "21": serial}
    wrong = {ai: v for ai, v in expected.items() if ai in found and found[ai] != v}
    missing = {"01", "21"} - found.keys()
    if wrong or missing:
        raise TraceCodeError(
            f"trace code {hri!r} does not carry the batch's own values "
            f"(missing AIs {sorted(missing)}, differing {sorted(wrong)})"
        )
    return TraceCode(hri=hri, digital_link=link)
