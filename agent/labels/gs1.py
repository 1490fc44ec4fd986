r"""GS1 codes on labels: an element string checked by biip, and its barcode field data for ZPL.

`Gs1Code.parse` takes a human-readable element string (`(01)09501101530003(10)LOT(21)7`) and
keeps it only if biip accepts it whole (every AI's pattern and check digit). Its barcode data:

- **GS1 DataMatrix** (`^BXN,6,200,0,0,6,_,1`: ECC 200, escape `_`, square): `_1` (FNC1)
  first, which makes the symbol a GS1 one, and `_1` again after each variable-length value that
  is not the last; a `_` in a value is `__`. The escape character is set in the command
  (`g` = `_`) because Zebra's firmware defaults differ (`~` now, `_` on V60.13.0.12). Our fields
  are hex-processed (`^FH\`), and the printer does that before the DataMatrix escapes: with
  `^FH`'s default indicator `_`, `_1…` would be read as a hex byte, so our indicator is `\` and
  `_1` reaches the encoder intact.
- **GS1-128** (`^BC` mode N, see `agent.labels.code128`): FNC1 first and after each
  variable-length value that is not the last; at most 48 data characters per symbol (GS1 General
  Specifications); a code too long for one symbol can be split at element boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import biip
from biip.gs1_messages import GS1Message

from agent.labels.code128 import FNC1, Code128, encode_code128
from agent.labels.errors import CodeError

if TYPE_CHECKING:
    from datetime import date

GS1_CHARSET_82 = frozenset(
    "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
)
"""The characters GS1 allows in AI values (the "82-character set")."""

MAX_GS1_128_CHARS = 48
MAX_HRI = 200


@dataclass(frozen=True, slots=True)
class Element:
    """One element string: AI, value, and whether a separator must follow it (variable length)."""

    ai: str
    value: str
    variable: bool

    @property
    def hri(self) -> str:
        """The element as people read it: `(10)LOT`."""
        return f"({self.ai}){self.value}"


@dataclass(frozen=True, slots=True)
class Gs1Code:
    """A valid GS1 element string, in order, with the dates biip read from it."""

    elements: tuple[Element, ...]
    dates: dict[str, date] = field(default_factory=dict, compare=False)

    @classmethod
    def parse(cls, hri: str) -> Gs1Code:
        """Check a human-readable element string; raise `CodeError` if biip refuses it."""
        if not hri or len(hri) > MAX_HRI:
            raise CodeError(f"a GS1 element string of 1 to {MAX_HRI} characters, not {hri!r}")
        try:
            message = GS1Message.parse_hri(hri)
        except biip.ParseError as exc:
            raise CodeError(f"{hri!r} is not a valid GS1 element string: {exc}") from exc
        elements = []
        dates = {}
        for es in message.element_strings:
            error = es.gtin_error or es.sscc_error or es.gln_error  # biip records, not raises
            if error:
                raise CodeError(f"{hri!r} is not a valid GS1 element string: {error}")
            bad = sorted(set(es.value) - GS1_CHARSET_82)
            if bad:
                raise CodeError(f"({es.ai.ai}) holds characters outside GS1's set: {bad!r}")
            elements.append(Element(es.ai.ai, es.value, es.ai.separator_required))
            if es.date is not None:
                dates[es.ai.ai] = es.date
        code = cls(tuple(elements), dates)
        if code.hri != hri:  # biip drops spaces, say: the label must carry exactly the code
            raise CodeError(f"{hri!r} is not a valid GS1 element string: it reads as {code.hri!r}")
        return code

    @classmethod
    def sscc(cls, sscc: str) -> Gs1Code:
        """An SSCC (18 digits, valid check digit) as the element string `(00)…`."""
        if len(sscc) != 18 or not sscc.isascii() or not sscc.isdigit():  # noqa: PLR2004
            raise CodeError(f"an SSCC is 18 digits, not {sscc!r}")
        return cls.parse(f"(00){sscc}")

    @property
    def hri(self) -> str:
        """The element string as people read it: `(01)…(10)…`."""
        return "".join(e.hri for e in self.elements)

    def value(self, ai: str) -> str | None:
        """The value of the first element with this AI, if any."""
        return next((e.value for e in self.elements if e.ai == ai), None)

    @property
    def data(self) -> str:
        """The symbol data with GS for FNC1: FNC1 first, and after variable values but the last."""
        parts = [FNC1]
        for n, e in enumerate(self.elements, start=1):
            parts.append(e.ai + e.value)
            if e.variable and n < len(self.elements):
                parts.append(FNC1)
        return "".join(parts)

    def datamatrix(self) -> str:
        r"""Field data for `DATAMATRIX`, to be sent under `^FH\`."""
        return self.data.replace("_", "__").replace(FNC1, "_1")

    def gs1_128(self, *, max_modules: int) -> Code128:
        """The GS1-128 symbol of the whole code; `CodeError` if it does not fit."""
        chars = len(self.data) - 1  # the leading FNC1 is not a data character
        if chars > MAX_GS1_128_CHARS:
            raise CodeError(
                f"{self.hri} has {chars} data characters; a GS1-128 holds {MAX_GS1_128_CHARS}"
            )
        symbol = encode_code128(self.data)
        if symbol.modules > max_modules:
            raise CodeError(f"{self.hri} is {symbol.modules} modules wide, over {max_modules}")
        return symbol

    def split(self, *, max_modules: int) -> tuple[Gs1Code, Gs1Code]:
        """Two parts, cut between elements so that the wider GS1-128 is as narrow as it can be."""
        best: tuple[int, tuple[Gs1Code, Gs1Code]] | None = None
        for cut in range(1, len(self.elements)):
            parts = (Gs1Code(self.elements[:cut]), Gs1Code(self.elements[cut:]))
            try:
                widest = max(p.gs1_128(max_modules=max_modules).modules for p in parts)
            except CodeError:
                continue
            if best is None or widest < best[0]:
                best = (widest, parts)
        if best is None:
            raise CodeError(f"{self.hri} does not fit two GS1-128 symbols of {max_modules} modules")
        return best[1]
