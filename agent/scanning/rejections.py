"""Why a read is rejected: an English reason, and the same as a stable code with its params.

A `scan.rejected` event carries `reason` (a sentence in English) and, so that a page or a
downstream system can word it in its own language, `reason_code` and `reason_params`:

| `reason_code` | `reason_params` |
| --- | --- |
| `frame.too_long` | `max` (bytes) |
| `frame.incomplete` | — (no terminator came) |
| `frame.incomplete_at_disconnect` | — |
| `frame.unmapped_key` | `code`, `key`, `modifiers`, `keymap` (a HID scanner's key: below) |
| `frame.alt_code` | `digits` (a HID scanner's Alt+numpad code that is no character) |
| `frame.events_lost` | — (the kernel's input buffer overflowed during a HID scan) |
| `frame.error` | `detail` (another framing error of the driver) |
| `empty` | — |
| `too_long` | `max`, `length` (bytes) |
| `not_utf8` | `byte` (`0xNN`), `position` |
| `control_character` | `char` (`0xNN`), `position` |
| `non_printing_character` | `char` (`U+NNNN`), `position` |
| `no_data` | `identifier` (symbology identifier) |
| `gs1.check_digit` | `kind` (GTIN, SSCC, GLN), `value`, `expected` |
| `gs1.invalid_value` | `ai`, `title`, `format`, `value` |
| `gs1.invalid_date` | `ai`, `title`, `value` |
| `gs1.separator_missing` | `ai`, `title`, `format`, `rest` |
| `gs1.unknown_ai` | `at` |
| `gs1.empty_value` | `ai`, `title` |
| `gs1.repeated_ai` | `ai` |
| `gs1.no_elements` | — |
| `gs1.digital_link` | `detail` (biip's words) |
| `gs1.invalid` | `detail` (biip's words: length, digits) |
| `unparseable` | `error` |
| `text_refused` | `field` (`work_order`, `operator`), `detail` (the text rule's words) |

A keyboard-wedge (HID) scanner's key that its keymap cannot type: `code` is the Linux key code
(a number), `key` its name (`KEY_F13`; empty for a code without one), `modifiers` the ones held
(`Shift+AltGr`; empty for none), `keymap` the configured one (`us`, `uk`, `de`, `fr`).

Params quote the read where they say what was wrong with it (`value`, `rest`, `at`): they are
barcode contents, shown escaped on the page and never logged above DEBUG.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from biip.checksums import gs1_standard_check_digit

from drivers.scanners.framing import INCOMPLETE, INCOMPLETE_AT_DISCONNECT
from drivers.scanners.key_decoder import EVENTS_LOST, UNMAPPED_KEY

if TYPE_CHECKING:
    from biip.gs1_application_identifiers import GS1ApplicationIdentifier

_TOO_LONG_FRAME = "frame longer than "
# The keyboard-wedge decoder's words for an Alt+numpad code above 255 (a test makes it say them).
_ALT_CODE = re.compile(r"Alt\+numpad code (?P<digits>\d+) is not a character \(0-255\)")


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one read is rejected."""

    reason: str
    code: str
    params: dict[str, str | int] = field(default_factory=dict)


def framing(error: str) -> Rejection:
    """The driver's framing error of a read (`drivers.scanners.framing`, key faults included)."""
    if error == INCOMPLETE:
        return Rejection(error, "frame.incomplete")
    if error == INCOMPLETE_AT_DISCONNECT:
        return Rejection(error, "frame.incomplete_at_disconnect")
    limit = error.removeprefix(_TOO_LONG_FRAME).removesuffix(" bytes")
    if error.startswith(_TOO_LONG_FRAME) and limit.isdigit():
        return Rejection(error, "frame.too_long", {"max": int(limit)})
    return key_fault(error) or Rejection(error, "frame.error", {"detail": error})


def key_fault(error: str) -> Rejection | None:
    """A keyboard-wedge scanner's key fault (`drivers.scanners.key_decoder`), or None."""
    if error == EVENTS_LOST:
        return Rejection(error, "frame.events_lost")
    if unmapped := UNMAPPED_KEY.fullmatch(error):
        params: dict[str, str | int] = {
            "code": int(unmapped["code"]),
            "key": unmapped["key"] or "",
            "modifiers": unmapped["modifiers"] or "",
            "keymap": unmapped["keymap"],
        }
        return Rejection(error, "frame.unmapped_key", params)
    if alt_code := _ALT_CODE.fullmatch(error):
        return Rejection(error, "frame.alt_code", {"digits": alt_code["digits"]})
    return None


def text_refused(field: str, detail: str) -> Rejection:
    """A `WO:`/`OP:` line scan whose text breaks the free-text rule of `agent.text`."""
    return Rejection(f"{field}: {detail}", "text_refused", {"field": field, "detail": detail})


def empty() -> Rejection:
    """Nothing but whitespace was read."""
    return Rejection("empty read", "empty")


def too_long(limit: int, length: int) -> Rejection:
    """The read is longer than the station takes."""
    return Rejection(
        f"longer than {limit} bytes ({length})", "too_long", {"max": limit, "length": length}
    )


def not_utf8(byte: int, position: int) -> Rejection:
    """The read is not UTF-8 text."""
    return Rejection(
        f"not valid UTF-8 (byte 0x{byte:02x} at position {position})",
        "not_utf8",
        {"byte": f"0x{byte:02x}", "position": position},
    )


def control_character(char: str, position: int) -> Rejection:
    """A control character other than GS."""
    return Rejection(
        f"control character 0x{ord(char):02x} at position {position}",
        "control_character",
        {"char": f"0x{ord(char):02x}", "position": position},
    )


def non_printing_character(char: str, position: int) -> Rejection:
    """An invisible format or unassigned character (bidi override, zero-width mark...)."""
    return Rejection(
        f"non-printing character U+{ord(char):04X} at position {position}",
        "non_printing_character",
        {"char": f"U+{ord(char):04X}", "position": position},
    )


def no_data(identifier: object) -> Rejection:
    """A symbology identifier and nothing after it."""
    return Rejection(
        f"no data after symbology identifier {identifier}",
        "no_data",
        {"identifier": str(identifier)},
    )


def unparseable(exc: Exception) -> Rejection:
    """The interpreter's last resort (a bug met on odd input)."""
    error = f"{type(exc).__name__}: {exc}"[:200]
    return Rejection(f"unparseable: {error}"[:200], "unparseable", {"error": error})


# --- GS1 ---------------------------------------------------------------------------------------


def gs1_invalid(detail: object) -> Rejection:
    """The data biip refused (lengths, digits), in its own words."""
    return Rejection(f"GS1: {detail}", "gs1.invalid", {"detail": str(detail)})


def gs1_checked(kind: str, value: str, detail: object) -> Rejection:
    """A GTIN/SSCC/GLN biip refused: a wrong check digit if it is one, else biip's words."""
    if value.isascii() and value.isdigit() and len(value) > 1:
        expected = gs1_standard_check_digit(value[:-1])
        if int(value[-1]) != expected:
            return Rejection(
                f"GS1: {detail}",
                "gs1.check_digit",
                {"kind": kind, "value": value, "expected": expected},
            )
    return gs1_invalid(detail)


def gs1_invalid_value(ai: GS1ApplicationIdentifier, value: str, date_error: object) -> Rejection:
    """A value that does not fit its AI's format (or, for a date AI, is no date)."""
    reason = f"GS1: invalid value {value!r} for AI ({ai.ai}) {ai.data_title} (format {ai.format})"
    if date_error is not None:
        return Rejection(
            f"{reason}: {date_error}",
            "gs1.invalid_date",
            {"ai": ai.ai, "title": ai.data_title, "value": value},
        )
    params: dict[str, str | int] = {"ai": ai.ai, "title": ai.data_title, "format": ai.format}
    return Rejection(reason, "gs1.invalid_value", {**params, "value": value})


def gs1_separator_missing(ai: GS1ApplicationIdentifier, rest: str) -> Rejection:
    """A variable-length value not ended by GS before more data."""
    return Rejection(
        f"GS1: value for AI ({ai.ai}) {ai.data_title} is too long or has invalid characters "
        f"(format {ai.format}), or a GS separator is missing before {rest!r}",
        "gs1.separator_missing",
        {"ai": ai.ai, "title": ai.data_title, "format": ai.format, "rest": rest},
    )


def gs1_unknown_ai(at: str) -> Rejection:
    """No application identifier starts here."""
    return Rejection(f"GS1: unknown application identifier at {at!r}", "gs1.unknown_ai", {"at": at})


def gs1_empty_value(ai: GS1ApplicationIdentifier) -> Rejection:
    """An AI without a value."""
    return Rejection(
        f"GS1: empty value for AI ({ai.ai}) {ai.data_title}",
        "gs1.empty_value",
        {"ai": ai.ai, "title": ai.data_title},
    )


def gs1_repeated_ai(ai: str) -> Rejection:
    """One AI twice with different values."""
    return Rejection(
        f"GS1: AI ({ai}) appears twice with different values", "gs1.repeated_ai", {"ai": ai}
    )


def gs1_no_elements() -> Rejection:
    """GS1 data without any element string."""
    return Rejection("GS1: no element strings", "gs1.no_elements")


def gs1_digital_link(detail: object) -> Rejection:
    """A Digital Link URI biip cannot read."""
    return Rejection(
        f"GS1: invalid Digital Link URI: {detail}", "gs1.digital_link", {"detail": str(detail)}
    )
