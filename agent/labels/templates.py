r"""Label templates: ZPL with named fields, checked before use, and filled with escaped values.

A template is one ZPL format (`^XA … ^XZ`) in which `{name}` marks a field. Every field sits in
`^FD` field data of a field that is hex-processed with `\` as indicator (`^FH\`), because the
values are escaped for it (`hex_escape`): a `^`, `~` or `\` in a lot, a line name or a product
becomes `\5E`, `\7E`, `\5C` and cannot start a ZPL command. Barcode fields go in their own
barcode command, set up so that the printer reads our data as we meant it:

- `*_datamatrix` in `^BX` with quality 200 and escape character `_` (`^BXN,6,200,0,0,6,_`);
- `*_gs1_128` (and `_1`/`_2`) in `^BC` in mode N without a UCC check digit;
- every other field is text and must not sit in a barcode command.

`check_template` lists every problem (unknown fields first), for `check-config`;
`LabelTemplate.parse` raises `TemplateError` with that list. Templates that change the command
prefix or delimiter (`^CC`, `^CD`, `^CT`) are refused: the checks could not follow them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from agent.labels.errors import LabelError, TemplateError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


class LabelKind(StrEnum):
    """What a label is for."""

    BATCH = "batch"
    SSCC = "sscc"


CONTEXT_FIELDS = frozenset({"site", "node", "line", "product", "work_order", "quantity"})
"""Text fields the agent may fill on any label (empty when it has nothing to say)."""

DATAMATRIX_FIELDS = frozenset({"trace_code_datamatrix"})
GS1_128_FIELDS = frozenset(
    {"trace_code_gs1_128", "trace_code_gs1_128_1", "trace_code_gs1_128_2", "sscc_gs1_128"}
)
FIELDS: dict[LabelKind, frozenset[str]] = {
    LabelKind.BATCH: CONTEXT_FIELDS
    | {
        "trace_code",
        "trace_code_datamatrix",
        "trace_code_gs1_128",
        "trace_code_gs1_128_hri",
        "trace_code_gs1_128_1",
        "trace_code_gs1_128_1_hri",
        "trace_code_gs1_128_2",
        "trace_code_gs1_128_2_hri",
        "gtin",
        "lot",
        "date",
        "expiry",
        "serial",
    },
    LabelKind.SSCC: CONTEXT_FIELDS | {"sscc", "sscc_hri", "sscc_gs1_128"},
}
"""The fields each kind of label knows."""

MAX_TEMPLATE_BYTES = 64 * 1024
MAX_TEXT = 200
DEFAULT_MODULE_DOTS = 2  # ZPL's `^BY` default module width

_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_FS = re.compile(r"\^FS", re.IGNORECASE)
_FD = re.compile(r"\^FD", re.IGNORECASE)
_FH = re.compile(r"\^FH(.?)", re.IGNORECASE)
_BARCODE = re.compile(r"\^B([0-9A-XZ])([^^~]*)", re.IGNORECASE)  # ^BY is a setting, not a code
_BY = re.compile(r"\^BY(\d+)", re.IGNORECASE)
_PW = re.compile(r"\^PW(\d+)", re.IGNORECASE)
_FO = re.compile(r"\^F[OT](\d+)", re.IGNORECASE)
_PREFIX_CHANGE = re.compile(r"[\^~]C[CDT]", re.IGNORECASE)
_PLAIN = frozenset(chr(c) for c in range(0x20, 0x7F)) - {"^", "~", "\\"}


def hex_escape(text: str) -> str:
    r"""`text` as `^FH\` field data: `^ ~ \` and non-ASCII as `\XX` UTF-8 bytes.

    Non-ASCII prints right under `^CI28` (UTF-8). Control characters become spaces: a label has
    one line per field.
    """
    out = []
    for ch in text:
        if ch in _PLAIN:
            out.append(ch)
        elif ch.isprintable():
            out.append("".join(f"\\{b:02X}" for b in ch.encode()))
        else:
            out.append(" ")
    return "".join(out)


def text_field(name: str, value: str) -> str:
    """A text value escaped for its field; `LabelError` when it is too long for a label."""
    if len(value) > MAX_TEXT:
        raise LabelError(f"{name} is {len(value)} characters long; a label field takes {MAX_TEXT}")
    return hex_escape(value)


@dataclass(frozen=True, slots=True)
class FieldUse:
    """One `{name}` in a template, and for GS1-128 fields the widest symbol that fits there."""

    name: str
    start: int
    end: int
    max_modules: int | None = None


@dataclass(frozen=True, slots=True)
class LabelTemplate:
    """A checked template: `fill` it with escaped values to get the job's bytes."""

    name: str
    kind: LabelKind
    text: str
    uses: tuple[FieldUse, ...]

    @classmethod
    def parse(cls, text: str, *, kind: LabelKind, name: str) -> LabelTemplate:
        """Check a template; raise `TemplateError` listing every problem."""
        uses, problems = _analyse(text, kind)
        if problems:
            raise TemplateError(name, problems)
        return cls(name=name, kind=kind, text=text, uses=tuple(uses))

    @classmethod
    def load(cls, path: Path, *, kind: LabelKind) -> LabelTemplate:
        """Read and check a template file (UTF-8, at most 64 KiB)."""
        try:
            with path.open("rb") as f:
                raw = f.read(MAX_TEMPLATE_BYTES + 1)
        except OSError as exc:
            raise TemplateError(str(path), [f"cannot be read: {exc.strerror or exc}"]) from exc
        if len(raw) > MAX_TEMPLATE_BYTES:
            raise TemplateError(str(path), [f"is larger than {MAX_TEMPLATE_BYTES} bytes"])
        try:
            text = raw.decode()
        except UnicodeDecodeError as exc:
            raise TemplateError(str(path), [f"is not UTF-8 text ({exc.reason})"]) from exc
        return cls.parse(text, kind=kind, name=str(path))

    @property
    def fields(self) -> frozenset[str]:
        """The names of the fields this template uses."""
        return frozenset(u.name for u in self.uses)

    def max_modules(self, name: str) -> int | None:
        """The widest GS1-128 (in modules) that fits wherever `name` is used; None: unknown."""
        limits = [u.max_modules for u in self.uses if u.name == name and u.max_modules]
        return min(limits) if limits else None

    def fill(self, values: Mapping[str, str]) -> bytes:
        """The job: every field replaced by its (already escaped) value, as UTF-8 bytes."""
        missing = sorted(self.fields - values.keys())
        if missing:
            raise LabelError(f"label template {self.name}: no value for {missing}")
        parts = []
        at = 0
        for use in self.uses:
            parts += [self.text[at : use.start], values[use.name]]
            at = use.end
        parts.append(self.text[at:])
        return "".join(parts).encode()


def unknown_fields(text: str, kind: LabelKind) -> list[str]:
    """The field names in `text` that a label of this kind does not know, sorted."""
    return sorted({m.group(1) for m in _FIELD.finditer(text)} - FIELDS[kind])


def check_template(text: str, kind: LabelKind) -> list[str]:
    """Every problem of a template, one sentence each (unknown fields first); [] when usable."""
    return _analyse(text, kind)[1]


def _analyse(text: str, kind: LabelKind) -> tuple[list[FieldUse], list[str]]:
    problems = []
    unknown = unknown_fields(text, kind)
    if unknown:
        known = ", ".join(sorted(FIELDS[kind]))
        problems.append(f"unknown field(s) {', '.join(unknown)} (a {kind} label knows {known})")
    if len(text.encode()) > MAX_TEMPLATE_BYTES:
        problems.append(f"is larger than {MAX_TEMPLATE_BYTES} bytes")
    starts = [m.start() for m in re.finditer(r"\^XA", text, re.IGNORECASE)]
    ends = [m.start() for m in re.finditer(r"\^XZ", text, re.IGNORECASE)]
    if len(starts) != 1 or len(ends) != 1 or starts[0] > ends[0]:
        problems.append("must hold exactly one label format, ^XA … ^XZ")
    if _PREFIX_CHANGE.search(text):
        problems.append("changes a command prefix or delimiter (^CC/^CD/^CT), which is refused")
    width = _last_int(_PW, text)
    uses = []
    for m in _FIELD.finditer(text):
        name = m.group(1)
        if name not in FIELDS[kind]:
            continue
        problem, max_modules = _check_use(text, m.start(), name, width)
        if problem:
            problems.append(problem)
        uses.append(FieldUse(name, m.start(), m.end(), max_modules))
    return uses, problems


def _check_use(text: str, at: int, name: str, width: int | None) -> tuple[str | None, int | None]:
    """Whether field `name` at `at` sits where its value is read as meant; GS1-128 width room."""
    ends = [m.end() for m in _FS.finditer(text, 0, at)]
    seg_start = ends[-1] if ends else 0
    close = _FS.search(text, at)
    seg = text[seg_start : close.start() if close else len(text)]
    local = at - seg_start
    fds = list(_FD.finditer(seg, 0, local))
    if close is None or not fds or re.search(r"[\^~]", seg[fds[-1].end() : local]):
        return f"{{{name}}} must be inside ^FD field data closed by ^FS", None
    head = seg[: fds[-1].start()]
    hexes = [m.group(1) for m in _FH.finditer(head)]
    if not hexes or hexes[-1] != "\\":
        return f"{{{name}}} needs ^FH\\ before its ^FD (values are escaped with \\)", None
    codes = list(_BARCODE.finditer(head))
    problem = _barcode_problem(name, codes[-1] if codes else None)
    if problem or name not in GS1_128_FIELDS or width is None:
        return problem, None
    module = _last_int(_BY, text[:at]) or DEFAULT_MODULE_DOTS
    return None, max(0, width - (_last_int(_FO, head) or 0)) // module


def _barcode_problem(name: str, code: re.Match[str] | None) -> str | None:
    """Whether the barcode command of a field (None: text) suits the field's data."""
    letter = code.group(1).upper() if code else None
    params = [p.strip().upper() for p in code.group(2).split(",")] + [""] * 8 if code else []
    if name in DATAMATRIX_FIELDS:
        if letter != "X" or params[2] != "200" or params[6] != "_":
            return f"{{{name}}} must be in a ^BX with quality 200 and escape _ (^BXN,6,200,0,0,6,_)"
    elif name in GS1_128_FIELDS:
        if letter != "C" or params[4] not in ("", "N") or params[5] not in ("", "N"):
            return f"{{{name}}} must be in a ^BC in mode N, no UCC check digit (^BCN,100,N,N,N,N)"
    elif letter is not None:
        return f"{{{name}}} is text: it cannot be barcode data (^B{letter})"
    return None


def _last_int(pattern: re.Pattern[str], text: str) -> int | None:
    found = pattern.findall(text)
    return int(found[-1]) if found else None
