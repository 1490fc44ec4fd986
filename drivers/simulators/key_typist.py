"""Text to key events: how a keyboard-wedge scanner types a read with a given keymap.

The inverse of `drivers.scanners.key_decoder`, for virtual scanners (tests, `lineside demo`). Each
character becomes the keys a scanner set to that keyboard country presses: the key that types
it, with Shift held per upper-case character and AltGr (Right Alt) for third-level characters;
a dead key then Space for a lone accent, a dead key then the letter for an accented letter with
no key of its own; control characters as Ctrl + key (GS as Ctrl+], KEY_RIGHTBRACE) or, with
`control="alt"`, as Alt + numpad 0nnn; anything else as Alt + numpad 0nnn (Windows-1252).
Each key change is followed by `SYN_REPORT`, as a USB keyboard's reports are.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Literal

from drivers.scanners.evdev_events import (
    EV_KEY,
    EV_SYN,
    KEY_PRESS,
    KEY_RELEASE,
    SYN_REPORT,
    InputEvent,
    key_code,
)
from drivers.scanners.key_decoder import CONTROL_POSITIONS, ENTER_KEYS
from drivers.scanners.keymaps import DEAD_KEYS, ROWS

if TYPE_CHECKING:
    from drivers.scanners.keymaps import Keymap

Stroke = tuple[tuple[int, ...], int]  # modifiers held, key pressed

LEFT_SHIFT = key_code("KEY_LEFTSHIFT")
LEFT_CTRL = key_code("KEY_LEFTCTRL")
LEFT_ALT = key_code("KEY_LEFTALT")
RIGHT_ALT = key_code("KEY_RIGHTALT")
ENTER = key_code("KEY_ENTER")
KEYPAD = [key_code(f"KEY_KP{d}") for d in range(10)]
_SPACING = {spacing: mark for mark, spacing in DEAD_KEYS.items()}


class KeyTypist:
    """Types text as key events for one keymap; see the module docstring."""

    def __init__(
        self,
        keymap: Keymap,
        *,
        control: Literal["ctrl", "alt"] = "ctrl",
        terminator: int = ENTER,
    ) -> None:
        self.keymap = keymap
        self.control = control
        self.terminator = terminator
        self._strokes: dict[str, Stroke] = {}
        row_keys = [code for row in ROWS for code in row]
        others = [code for code in keymap.keys if code not in row_keys]
        for code in row_keys + others:
            key = keymap.keys.get(code)
            if key is None or code == terminator or code in ENTER_KEYS:
                continue  # Enter only ever ends a scan here
            for index, char in enumerate(key.levels):
                if char is not None and char not in self._strokes:
                    modifiers = ((RIGHT_ALT,) if index >= 2 else ()) + (  # noqa: PLR2004
                        (LEFT_SHIFT,) if index % 2 else ()
                    )
                    self._strokes[char] = (modifiers, code)

    def events(self, text: str, *, end: bool = True) -> list[InputEvent]:
        """The key events that type `text`, then the terminator key unless `end` is false."""
        events: list[InputEvent] = []
        for char in text:
            events += self.char_events(char)
        if end:
            events += _press(((), self.terminator))
        return events

    def char_events(self, char: str) -> list[InputEvent]:
        """The key events that type one character."""
        if ord(char) < 0x20 and self.control == "alt":  # noqa: PLR2004 - C0 controls
            return _alt_code(ord(char))
        if ord(char) < 0x20:  # noqa: PLR2004
            stroke = self._control_stroke(char)
            return _press(stroke) if stroke else _alt_code(ord(char))
        if char not in DEAD_KEYS and (stroke := self._strokes.get(char)):
            return _press(stroke)
        if (mark := _SPACING.get(char)) and mark in self._strokes:
            return _press(self._strokes[mark]) + _press(self._strokes[" "])
        decomposed = unicodedata.normalize("NFD", char)
        base, accent = decomposed[0], decomposed[1:]
        if accent in self._strokes and base in self._strokes:
            return _press(self._strokes[accent]) + _press(self._strokes[base])
        try:
            return _alt_code(char.encode("cp1252")[0])
        except UnicodeEncodeError as exc:
            raise ValueError(f"cannot type {char!r} with keymap {self.keymap.name}") from exc

    def _control_stroke(self, char: str) -> Stroke | None:
        for code, control in CONTROL_POSITIONS.items():
            if control == char:
                return (LEFT_CTRL,), code
        printable = chr(ord(char) + 0x40)
        stroke = self._strokes.get(printable.lower()) or self._strokes.get(printable)
        if stroke is None or RIGHT_ALT in stroke[0]:
            return None
        return (LEFT_CTRL, *stroke[0]), stroke[1]


def _key(code: int, value: int) -> list[InputEvent]:
    return [InputEvent(EV_KEY, code, value), InputEvent(EV_SYN, SYN_REPORT, 0)]


def _press(stroke: Stroke) -> list[InputEvent]:
    modifiers, code = stroke
    events: list[InputEvent] = []
    for modifier in modifiers:
        events += _key(modifier, KEY_PRESS)
    events += _key(code, KEY_PRESS) + _key(code, KEY_RELEASE)
    for modifier in reversed(modifiers):
        events += _key(modifier, KEY_RELEASE)
    return events


def _alt_code(number: int) -> list[InputEvent]:
    """Alt held, numpad 0nnn (leading zero: Windows-1252), Alt released."""
    events = _key(LEFT_ALT, KEY_PRESS)
    for digit in f"0{number:03d}":
        events += _key(KEYPAD[int(digit)], KEY_PRESS) + _key(KEYPAD[int(digit)], KEY_RELEASE)
    return events + _key(LEFT_ALT, KEY_RELEASE)
