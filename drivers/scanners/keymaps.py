"""Keyboard layouts a keyboard-wedge scanner can be set to: `us`, `uk`, `de` and `fr`.

A scanner in keyboard mode "types" each character as the key presses that produce it on the
host's layout (its "keyboard country" setting), so reading it means knowing that layout. A
`Keymap` says what each key gives at four levels: plain, Shift, AltGr, Shift+AltGr — the
Windows layouts of those names, which scanners are built to match (`de` is QWERTZ, `fr` AZERTY
with the digits on Shift). Dead keys (circumflex, acute and grave in `de`; circumflex,
diaeresis, AltGr tilde and AltGr grave in `fr`) are given as the combining mark they put on the
next letter; a scanner types a lone accent as the dead key followed by Space.

Rows list the keys of each physical row left to right (ISO keyboard), each as the characters of
its levels; `∅` marks a key with no character. What Ctrl, Alt and Caps Lock do is the decoder's
(`drivers.scanners.key_decoder`): the same for every layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from drivers.scanners.evdev_events import key_code

if TYPE_CHECKING:
    from collections.abc import Mapping

KeymapName = Literal["us", "uk", "de", "fr"]

NO_CHAR = "∅"
# Dead keys: the combining mark a dead key holds, and the character it types on its own.
DEAD_KEYS = MappingProxyType(
    {"\u0300": "`", "\u0301": "\u00b4", "\u0302": "^", "\u0303": "~", "\u0308": "\u00a8"}
)


def _codes(names: str) -> tuple[int, ...]:
    return tuple(key_code(f"KEY_{name}") for name in names.split())


# The four alphanumeric rows, left to right (KEY_BACKSLASH is the ISO key left of Enter, the
# `#` key of uk and de; KEY_102ND the ISO key right of left Shift).
ROWS = (
    _codes("GRAVE 1 2 3 4 5 6 7 8 9 0 MINUS EQUAL"),
    _codes("Q W E R T Y U I O P LEFTBRACE RIGHTBRACE"),
    _codes("A S D F G H J K L SEMICOLON APOSTROPHE BACKSLASH"),
    _codes("102ND Z X C V B N M COMMA DOT SLASH"),
)
_KEYPAD = dict(
    zip(_codes("KP0 KP1 KP2 KP3 KP4 KP5 KP6 KP7 KP8 KP9"), "0123456789", strict=True)
) | dict(zip(_codes("KPSLASH KPASTERISK KPMINUS KPPLUS"), "/*-+", strict=True))
KEYPAD_DIGITS = MappingProxyType({code: char for code, char in _KEYPAD.items() if char.isdigit()})
# Keys that type the same in every layout; Enter is here for a terminator other than Enter.
_COMMON = {
    key_code("KEY_SPACE"): "  ",
    key_code("KEY_TAB"): "\t\t",
    key_code("KEY_ENTER"): "\r\r",
    key_code("KEY_KPENTER"): "\r\r",
    key_code("KEY_BACKSPACE"): "\b\b",
    key_code("KEY_ESC"): "\x1b\x1b",
} | {code: char * 2 for code, char in _KEYPAD.items()}


@dataclass(frozen=True, slots=True)
class Key:
    """What one key types at each level: plain, Shift, AltGr, Shift+AltGr."""

    levels: tuple[str | None, ...]

    def char(self, *, shift: bool, altgr: bool) -> str | None:
        """The character at that level (a combining mark for a dead key), None for nothing."""
        index = (2 if altgr else 0) + (1 if shift else 0)
        return self.levels[index] if index < len(self.levels) else None

    @property
    def alphabetic(self) -> bool:
        """A letter key (its Shift level is its plain level upper-cased): Caps Lock applies."""
        plain, shift = (*self.levels, None, None)[:2]
        return plain is not None and plain.isalpha() and plain.upper() == shift != plain


@dataclass(frozen=True, slots=True)
class Keymap:
    """One keyboard layout: the keys by evdev code, and whether Right Alt is AltGr."""

    name: KeymapName
    keys: Mapping[int, Key]
    altgr: bool
    keypad_decimal: str

    @classmethod
    def from_rows(
        cls, name: KeymapName, rows: tuple[str, str, str, str], *, altgr: bool, decimal: str
    ) -> Keymap:
        """A layout from its four rows of keys (see the module docstring)."""
        keys: dict[int, Key] = {code: Key(tuple(levels)) for code, levels in _COMMON.items()}
        keys[key_code("KEY_KPDOT")] = Key((decimal, decimal))
        for codes, row in zip(ROWS, rows, strict=True):
            for code, token in zip(codes, row.split(), strict=True):
                levels = tuple(None if c == NO_CHAR else c for c in token)
                if any(c is not None for c in levels):
                    keys[code] = Key(levels)
        return cls(name, MappingProxyType(keys), altgr, decimal)


US = Keymap.from_rows(
    "us",
    (
        "`~ 1! 2@ 3# 4$ 5% 6^ 7& 8* 9( 0) -_ =+",
        "qQ wW eE rR tT yY uU iI oO pP [{ ]}",
        "aA sS dD fF gG hH jJ kK lL ;: '\" \\|",
        "∅ zZ xX cC vV bB nN mM ,< .> /?",
    ),
    altgr=False,
    decimal=".",
)
UK = Keymap.from_rows(
    "uk",
    (
        '`¬¦ 1! 2" 3£ 4$€ 5% 6^ 7& 8* 9( 0) -_ =+',
        "qQ wW eEéÉ rR tT yY uUúÚ iIíÍ oOóÓ pP [{ ]}",
        "aAáÁ sS dD fF gG hH jJ kK lL ;: '@ #~",
        "\\| zZ xX cC vV bB nN mM ,< .> /?",
    ),
    altgr=True,
    decimal=".",
)
DE = Keymap.from_rows(
    "de",
    (
        '\u0302° 1! 2"² 3§³ 4$ 5% 6& 7/{ 8([ 9)] 0=} ß?\\ \u0301\u0300',
        "qQ@ wW eE€ rR tT zZ uU iI oO pP üÜ +*~",
        "aA sS dD fF gG hH jJ kK lL öÖ äÄ #'",
        "<>| yY xX cC vV bB nN mMµ ,; .: -_",
    ),
    altgr=True,
    decimal=",",
)
FR = Keymap.from_rows(
    "fr",
    (
        "² &1 é2\u0303 \"3# '4{ (5[ -6| è7\u0300 _8\\ ç9^ à0@ )°] =+}",
        "aA zZ eE€ rR tT yY uU iI oO pP \u0302\u0308 $£¤",
        "qQ sS dD fF gG hH jJ kK lL mM ù% *µ",
        "<> wW xX cC vV bB nN ,? ;. :/ !§",
    ),
    altgr=True,
    decimal=".",
)
KEYMAPS: Mapping[KeymapName, Keymap] = MappingProxyType({"us": US, "uk": UK, "de": DE, "fr": FR})
