r"""One rule for free text from outside, and how any text is shown where people read it.

Free text reaches the agent from MQTT commands, `WO:`/`OP:` line scans, the status page's
work-order action and PLC string registers. Every free-text field follows one rule: printable
characters only — no C0/C1 control character, no DEL, no format character (bidi overrides,
zero-width marks: Unicode category Cf), nothing unassigned (Cn), private (Co), surrogate (Cs)
or a line/paragraph separator (Zl, Zp) — and the same length cap for the same field wherever it
comes from. A value that breaks the rule is refused with a reason naming the field
(`work_order: control character 0x0a at position 3`), never cleaned up silently:

| field | cap | characters |
| --- | --- | --- |
| `work_order` | 64 | printable |
| `lot` | 20 | GS1 set 82 (AI 10's): printable ASCII but space and ``#$@[\]^`{|}~`` |
| `operator` (badge) | 32 | printable |
| `planned_qty` | 1..10**9 | a JSON integer (not `"1000"`, `true` or `1000.0`) |

PLC string registers are measurements, not instructions: a batch must still be stamped when a
register holds junk, so their text is escaped (`shown`), not refused (see `agent.batches.line`).

`shown` escapes what the rule forbids (``\xNN``, ``\uNNNN``, ``\UNNNNNNNN``) for logs, the
terminal and reports, where old histories may still hold such characters; `EscapingFormatter`
applies it to every log line, so no text from the network can forge a line or move a cursor;
`validation_text` words a refused model (an MQTT command, the page's work order) as one line.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field, Strict
from pydantic_core import PydanticCustomError

if TYPE_CHECKING:
    from pydantic import ValidationError

WORK_ORDER_MAX = 64
LOT_MAX = 20
OPERATOR_MAX = 32
QUANTITY_MAX = 10**9
_ERRORS_SHOWN = 3  # validation errors listed in one line; the rest are counted

_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NON_PRINTING_CATEGORIES = frozenset({"Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp"})
_LOT = re.compile(r"[!-\"%-?A-Z_a-z]+", re.ASCII)  # GS1 character set 82 (AI 10's pattern)


@functools.cache
def _ascii_forbidden(allow: str) -> re.Pattern[str]:
    return re.compile(
        "[" + "".join(re.escape(chr(c)) for c in [*range(0x20), 0x7F] if chr(c) not in allow) + "]"
    )


class TextRefused(ValueError):
    """A free-text value breaks the rule; the message names the field and why."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def first_forbidden(text: str, *, allow: str = "") -> tuple[str, int] | None:
    """The first character the rule forbids and its position; None if there is none.

    `allow` names characters let through all the same (a scanned GS1 code keeps its GS).
    """
    if text.isascii():  # the common case, at scanning speed
        match = _ascii_forbidden(allow).search(text)
        return None if match is None else (match.group(), match.start())
    for position, char in enumerate(text):
        if unicodedata.category(char) in _NON_PRINTING_CATEGORIES and char not in allow:
            return char, position
    return None


def describe_forbidden(char: str, position: int) -> str:
    """Say in words which forbidden character stands where."""
    if unicodedata.category(char) == "Cc":
        return f"control character 0x{ord(char):02x} at position {position}"
    return f"non-printing character U+{ord(char):04X} at position {position}"


def forbidden_character(text: str, *, allow: str = "") -> str | None:
    """The first character the rule forbids, described with its position; None if there is none.

    `allow` names characters let through all the same (a scanned GS1 code keeps its GS).
    """
    found = first_forbidden(text, allow=allow)
    return None if found is None else describe_forbidden(*found)


def checked(field: str, text: str, *, max_length: int) -> str:
    """`text` when it follows the rule for `field`; else `TextRefused` naming the field."""
    problem = _problem(text, max_length)
    if problem is not None:
        raise TextRefused(field, problem)
    return text


def _problem(text: str, max_length: int) -> str | None:
    if not text:
        return "empty"
    if len(text) > max_length:
        return f"longer than {max_length} characters ({len(text)})"
    return forbidden_character(text)


def _lot_problem(text: str) -> str | None:
    if _LOT.fullmatch(text):
        return None
    position, char = next((i, c) for i, c in enumerate(text) if not _LOT.fullmatch(c))
    return f"character {char!r} at position {position} is not allowed in a GS1 lot (AI 10)"


def _validator(max_length: int) -> AfterValidator:
    def check(value: str) -> str:
        problem = _problem(value, max_length)
        if problem is not None:  # pydantic puts the field name in front of it
            raise PydanticCustomError("free_text", problem)
        return value

    return AfterValidator(check)


def _check_lot(value: str) -> str:
    problem = _problem(value, LOT_MAX) or _lot_problem(value)
    if problem is not None:
        raise PydanticCustomError("lot_text", problem)
    return value


WorkOrderText = Annotated[str, Strict(), _validator(WORK_ORDER_MAX)]
"""A work order id: 1..64 printable characters."""

LotText = Annotated[str, Strict(), AfterValidator(_check_lot)]
"""A lot: 1..20 characters of GS1 character set 82."""

Quantity = Annotated[int, Strict(), Field(ge=1, le=QUANTITY_MAX)]
"""A planned quantity: a JSON integer in 1..10**9."""


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:  # noqa: PLR2004
        return f"\\x{code:02x}"
    if code <= 0xFFFF:  # noqa: PLR2004
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def shown(text: str, *, keep: str = "") -> str:
    r"""`text` with every character the rule forbids escaped (``\x1b``, ``\u202e``), `keep` kept."""
    if text.isascii() and not _ASCII_CONTROL.search(text):
        return text
    return "".join(
        _escape(c) if c not in keep and unicodedata.category(c) in _NON_PRINTING_CATEGORIES else c
        for c in text
    )


def shown_tree(value: Any) -> Any:
    """A JSON-like value with every string in it (keys too) passed through `shown`."""
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, dict):
        return {shown_tree(k): shown_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [shown_tree(v) for v in value]
    return value


def json_shown(text: str) -> str:
    """JSON text (as `json.dumps` writes it) with every non-printable character as an escape.

    `json.dumps` escapes C0 controls inside strings itself, so a raw line break left in its
    output is layout; DEL, C1, bidi overrides and the like it writes raw. The escapes added
    are JSON's own, so the data read back is unchanged.
    """
    if text.isascii() and "\x7f" not in text:
        return text
    return "".join(_json_escape(c) if ord(c) >= 0x7F else c for c in text)  # noqa: PLR2004


def _json_escape(char: str) -> str:
    if unicodedata.category(char) not in _NON_PRINTING_CATEGORIES:
        return char
    code = ord(char)
    if code <= 0xFFFF:  # noqa: PLR2004
        return f"\\u{code:04x}"
    code -= 0x10000  # outside the BMP: a surrogate pair, as JSON spells it
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


class EscapingFormatter(logging.Formatter):
    """A log formatter that escapes non-printable characters in every message.

    Log lines carry text from the network and from devices (topics, error messages of peers);
    a newline or an escape sequence there must not forge a line or drive the terminal. A
    traceback keeps its line breaks and escapes everything else.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        """Format the record's line with its message escaped."""
        return shown(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's signature)
        """Format a traceback, escaping everything but its line breaks."""
        return shown(super().formatException(ei), keep="\n")


def validation_text(exc: ValidationError) -> str:
    """A validation error as one line naming each field (`lot: longer than 20 characters`)."""
    errors = exc.errors()
    parts = [
        f"{'.'.join(shown(str(p))[:64] for p in e['loc']) or 'payload'}: {e['msg']}"
        for e in errors[:_ERRORS_SHOWN]
    ]
    if len(errors) > _ERRORS_SHOWN:
        parts.append(f"and {len(errors) - _ERRORS_SHOWN} more")
    return "; ".join(parts)
