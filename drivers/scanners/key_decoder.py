r"""Key events to text: a keyboard-wedge scanner's keystrokes decoded with its keymap.

`KeyDecoder.feed(event)` takes one input event and returns what it typed: text,
`END_OF_SCAN` (the terminator key), or a `KeyFault` that spoils the scan it is part of. The
rules are the same for every keymap:

- Shift, AltGr and Caps Lock choose the level. AltGr is Right Alt in `uk`, `de` and `fr`, or
  Ctrl + Left Alt there as on Windows; in `us` both Alts are Alt. Caps Lock is toggled by its
  key (or starts on, for scanners set to "Caps Lock on") and inverts Shift on letter keys only,
  so `fr` digits still need Shift.
- Ctrl + a key typing a letter or one of ``@[\]^_`` types that control character (Ctrl+A is
  0x01, Ctrl+] is GS 0x1D; de Ctrl+AltGr+9, the key typing ``]`` there, is GS too). Ctrl + the
  key at the US position of ``[``, ``\`` or ``]`` (KEY_LEFTBRACE, KEY_BACKSLASH,
  KEY_RIGHTBRACE) types ESC, FS or GS whatever that key types in the layout (de ``ü # +``,
  fr ``^ * $``). Scanners' control-character tables (Honeywell's Control+X mode, Zebra's and
  Datalogic's keyboard-wedge tables: "GS = Ctrl+]") are written for US key positions and warn
  that other keyboard countries may differ; Windows' own layouts keep Ctrl+] at that key, so
  both forms are read as GS.
- Alt held, numpad digits, Alt released: the character with that decimal code, as Windows
  does — with a leading 0 from Windows-1252 (Alt+0029 is GS, Alt+0233 é), without it from
  code page 437 above 127 (Alt+130 é). A code above 255 spoils the scan.
- Numpad keys type digits whatever Num Lock says (scanners' keypad emulation assumes it on).
- Releases and auto-repeats type nothing: a scanner never holds a key on purpose, and a kernel
  repeat after a USB stall would double a character.
- A key with nothing at its level, or Alt (or Meta) with any key but a numpad digit, spoils the
  scan; the fault names the key code (`UNMAPPED_KEY` matches its text).
- `SYN_DROPPED` (the kernel's buffer overflowed) spoils the scan and forgets held modifiers.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from drivers.scanners.evdev_events import (
    EV_KEY,
    EV_SYN,
    KEY_PRESS,
    KEY_RELEASE,
    SYN_DROPPED,
    key_code,
    key_label,
)
from drivers.scanners.keymaps import DEAD_KEYS, KEYPAD_DIGITS

if TYPE_CHECKING:
    from collections.abc import Iterable

    from drivers.scanners.evdev_events import InputEvent
    from drivers.scanners.keymaps import Keymap

UNMAPPED_KEY: Final = re.compile(
    r"unmapped key code (?P<code>\d+)(?: \((?P<key>KEY_\w+)\))?"
    r"(?: with (?P<modifiers>[\w+]+))? in keymap (?P<keymap>\w+)"
)
EVENTS_LOST = "input events lost (the kernel's event buffer overflowed)"
ALT_CODE_DIGITS = 10  # longer Alt+numpad codes are refused, never held


class EndOfScan:
    """The terminator key: the scan ends here."""

    def __repr__(self) -> str:
        return "END_OF_SCAN"


END_OF_SCAN: Final = EndOfScan()


@dataclass(frozen=True, slots=True)
class KeyFault:
    """Something typed that is not text under the keymap; the scan it is part of is rejected."""

    reason: str


Decoded = str | KeyFault | EndOfScan

SHIFTS = frozenset({key_code("KEY_LEFTSHIFT"), key_code("KEY_RIGHTSHIFT")})
CTRLS = frozenset({key_code("KEY_LEFTCTRL"), key_code("KEY_RIGHTCTRL")})
LEFT_ALT = key_code("KEY_LEFTALT")
RIGHT_ALT = key_code("KEY_RIGHTALT")
METAS = frozenset({key_code("KEY_LEFTMETA"), key_code("KEY_RIGHTMETA")})
MODIFIERS = SHIFTS | CTRLS | METAS | {LEFT_ALT, RIGHT_ALT}
CAPS_LOCK = key_code("KEY_CAPSLOCK")
IGNORED = frozenset({key_code("KEY_NUMLOCK"), key_code("KEY_SCROLLLOCK")})
# Ctrl + the key at these US positions: ESC, FS, GS in every layout (see the module docstring).
CONTROL_POSITIONS = {
    key_code("KEY_LEFTBRACE"): "\x1b",
    key_code("KEY_BACKSLASH"): "\x1c",
    key_code("KEY_RIGHTBRACE"): "\x1d",
}
ENTER_KEYS = frozenset({key_code("KEY_ENTER"), key_code("KEY_KPENTER")})


def alt_code_char(digits: str) -> str | None:
    """The character Windows types for Alt + these numpad digits; None above 255."""
    number = int(digits)
    if number > 255:  # noqa: PLR2004 - one byte
        return None
    if digits.startswith("0") or number < 128:  # noqa: PLR2004 - ASCII
        try:
            return bytes([number]).decode("cp1252")
        except UnicodeDecodeError:
            return chr(number)  # 0x81, 0x8D, 0x8F, 0x90, 0x9D: Windows types the C1 control
    return bytes([number]).decode("cp437")


class KeyDecoder:
    """Decodes one device's key events with a keymap; see the module docstring for the rules."""

    def __init__(
        self, keymap: Keymap, *, terminators: Iterable[int] = ENTER_KEYS, caps_lock: bool = False
    ) -> None:
        self.keymap = keymap
        self.terminators = frozenset(terminators)
        self.caps_lock = caps_lock
        # Alt + numpad digits: Left Alt, and Right Alt where it is not AltGr.
        self._alt_keys = frozenset({LEFT_ALT} if keymap.altgr else {LEFT_ALT, RIGHT_ALT})
        self._held: set[int] = set()
        self._alt_digits = ""
        self._dead: str | None = None
        self._dropping = False

    def reset_scan(self) -> None:
        """Forget what belongs to the scan in progress (a pending accent or Alt code)."""
        self._dead = None
        self._alt_digits = ""

    def feed(self, event: InputEvent) -> list[Decoded]:
        """What one event typed (usually nothing or one character)."""
        if event.type == EV_SYN:
            return self._sync(event.code)
        code, value = event.code, event.value
        if event.type != EV_KEY or self._dropping:
            typed: list[Decoded] = []
        elif code in MODIFIERS:
            typed = self._modifier(code, value)
        elif value != KEY_PRESS or code in IGNORED:
            typed = []
        elif code == CAPS_LOCK:
            self.caps_lock = not self.caps_lock
            typed = []
        elif code in self.terminators:
            typed = [*self._flush_dead(), END_OF_SCAN]
        else:
            typed = self._key(code)
        return typed

    def _sync(self, code: int) -> list[Decoded]:
        if code == SYN_DROPPED:
            self._dropping = True
            self._held.clear()
            self.reset_scan()
            return [KeyFault(EVENTS_LOST)]
        self._dropping = False  # SYN_REPORT: the device's state is whole again
        return []

    def _modifier(self, code: int, value: int) -> list[Decoded]:
        if value == KEY_PRESS:
            if code in self._alt_keys and not self._held & self._alt_keys:
                self._alt_digits = ""
            self._held.add(code)
        elif value == KEY_RELEASE:
            self._held.discard(code)
            if code in self._alt_keys and not self._held & self._alt_keys and self._alt_digits:
                digits, self._alt_digits = self._alt_digits, ""
                char = alt_code_char(digits) if len(digits) <= ALT_CODE_DIGITS else None
                if char is None:
                    return [KeyFault(f"Alt+numpad code {digits} is not a character (0-255)")]
                return [*self._flush_dead(), char]
        return []

    def _key(self, code: int) -> list[Decoded]:
        held = self._held
        shift = bool(held & SHIFTS)
        ctrl = bool(held & CTRLS)
        alt = bool(held & self._alt_keys)
        altgr = self.keymap.altgr and RIGHT_ALT in held
        if alt and not ctrl and code in KEYPAD_DIGITS:
            if len(self._alt_digits) <= ALT_CODE_DIGITS:
                self._alt_digits += KEYPAD_DIGITS[code]
            return []
        if ctrl and alt and self.keymap.altgr and not altgr:
            ctrl = alt = False  # Ctrl + Left Alt is AltGr, as on Windows
            altgr = True
        key = self.keymap.keys.get(code)
        if key is not None and self.caps_lock and key.alphabetic:
            shift = not shift
        if alt or held & METAS:
            return [self._unmapped(code)]
        char = None if key is None else key.char(shift=shift, altgr=altgr)
        if ctrl:
            control = _control(char, code)
            return [*self._flush_dead(), control] if control else [self._unmapped(code)]
        if char is None:
            return [self._unmapped(code)]
        text = self._compose(char)
        return [text] if text else []

    def _compose(self, char: str) -> str:
        """The text of `char` after a pending dead key; "" when `char` is itself a dead key."""
        dead, self._dead = self._dead, None
        if char in DEAD_KEYS:
            if dead is None:
                self._dead = char
                return ""
            return DEAD_KEYS[dead] + DEAD_KEYS[char]
        if dead is None:
            return char
        if char == " ":
            return DEAD_KEYS[dead]
        composed = unicodedata.normalize("NFC", char + dead)
        return composed if len(composed) == 1 else DEAD_KEYS[dead] + char

    def _flush_dead(self) -> list[Decoded]:
        dead, self._dead = self._dead, None
        return [] if dead is None else [DEAD_KEYS[dead]]

    def _unmapped(self, code: int) -> KeyFault:
        self.reset_scan()
        names = [
            ("Shift", SHIFTS),
            ("Ctrl", CTRLS),
            ("Alt", self._alt_keys),
            ("AltGr", {RIGHT_ALT} - self._alt_keys),
            ("Meta", METAS),
        ]
        held = "+".join(name for name, keys in names if self._held & keys)
        with_held = f" with {held}" if held else ""
        return KeyFault(f"unmapped key {key_label(code)}{with_held} in keymap {self.keymap.name}")


def _control(char: str | None, code: int) -> str | None:
    """The control character of Ctrl + a key that types `char` (see the module docstring)."""
    if char is not None and len(char) == 1:
        upper = char.upper() if "a" <= char <= "z" else char
        if "@" <= upper <= "_":
            return chr(ord(upper) - 0x40)
    return CONTROL_POSITIONS.get(code)
