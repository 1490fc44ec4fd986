"""Keyboard-wedge decoding without a device: recorded key streams through the keymaps.

The recorded streams are written from scanners' documented keyboard-mode behaviour: Shift
pressed and released around each upper-case character; GS as "Ctrl+]" (the control-character
tables of Honeywell's Control+X mode, Zebra's and Datalogic's keyboard-wedge ASCII tables) or
as Alt + numpad 0029 (Honeywell ALT mode, Zebra "Emulate Keypad with leading zero"); the
keyboard country's own keys for everything else.
"""

from __future__ import annotations

import re
import string
import sys
from pathlib import Path

import pytest
from hid_support import encode, keys
from hypothesis import given
from hypothesis import strategies as st

from drivers.scanners.double_reads import DoubleReadFilter
from drivers.scanners.evdev_events import (
    EV_KEY,
    EV_MSC,
    EV_SYN,
    EVIOCGID,
    EVIOCGRAB,
    EVIOCGVERSION,
    INPUT_EVENT,
    KEY_CODES,
    KEY_REPEAT,
    SYN_DROPPED,
    SYN_REPORT,
    UI_DEV_CREATE,
    UI_DEV_SETUP,
    UI_SET_EVBIT,
    UI_SET_KEYBIT,
    EventParser,
    InputEvent,
    eviocgname,
    key_code,
)
from drivers.scanners.framing import INCOMPLETE, INCOMPLETE_AT_DISCONNECT, Frame
from drivers.scanners.key_decoder import (
    END_OF_SCAN,
    EVENTS_LOST,
    UNMAPPED_KEY,
    Decoded,
    KeyDecoder,
    KeyFault,
    alt_code_char,
)
from drivers.scanners.key_framing import KeyScanFramer
from drivers.scanners.keymaps import KEYMAPS, KeymapName
from drivers.simulators.key_typist import KeyTypist

PAYLOAD = "]d2010950110153000310ABC\x1d21XYZ"  # GS1 DataMatrix: (01)(10)ABC GS (21)XYZ
DIGITS = "010950110153000310"
GS_CTRL = "+LEFTCTRL RIGHTBRACE -LEFTCTRL"
GS_ALT = "+LEFTALT KP0 KP0 KP2 KP9 -LEFTALT"


def shifted(*names: str) -> str:
    return " ".join(f"+LEFTSHIFT {name} -LEFTSHIFT" for name in names)


# One recorded stream per keymap and GS form (with the Enter that ends the scan).
RECORDED: dict[tuple[KeymapName, str], str] = {
    ("us", "ctrl"): f"RIGHTBRACE D 2 {' '.join(DIGITS)} {shifted('A', 'B', 'C')} {GS_CTRL} "
    f"2 1 {shifted('X', 'Y', 'Z')} ENTER",
    ("us", "alt"): f"RIGHTBRACE D 2 {' '.join(DIGITS)} {shifted('A', 'B', 'C')} {GS_ALT} "
    f"2 1 {shifted('X', 'Y', 'Z')} KPENTER",
    ("uk", "ctrl"): f"RIGHTBRACE D 2 {' '.join(DIGITS)} {shifted('A', 'B', 'C')} {GS_CTRL} "
    f"2 1 {shifted('X', 'Y', 'Z')} ENTER",
    ("uk", "alt"): f"RIGHTBRACE D 2 {' '.join(DIGITS)} {shifted('A', 'B', 'C')} {GS_ALT} "
    f"2 1 {shifted('X', 'Y', 'Z')} ENTER",
    # QWERTZ: ] is AltGr+9, Y and Z swap places; Ctrl+] is Ctrl + the `+` key (US `]`).
    ("de", "ctrl"): f"+RIGHTALT 9 -RIGHTALT D 2 {' '.join(DIGITS)} {shifted('A', 'B', 'C')} "
    f"{GS_CTRL} 2 1 {shifted('X', 'Z', 'Y')} ENTER",
    ("de", "alt"): f"+RIGHTALT 9 -RIGHTALT D 2 {' '.join(DIGITS)} {shifted('A', 'B', 'C')} "
    f"{GS_ALT} 2 1 {shifted('X', 'Z', 'Y')} ENTER",
    # AZERTY: digits are on Shift, ] is AltGr + the `)` key, A/Q and Z/W swap places.
    ("fr", "ctrl"): f"+RIGHTALT MINUS -RIGHTALT D {shifted('2', *DIGITS)} "
    f"{shifted('Q', 'B', 'C')} {GS_CTRL} {shifted('2', '1', 'X', 'Y', 'W')} ENTER",
    ("fr", "alt"): f"+RIGHTALT MINUS -RIGHTALT D {shifted('2', *DIGITS)} "
    f"{shifted('Q', 'B', 'C')} {GS_ALT} {shifted('2', '1', 'X', 'Y', 'W')} ENTER",
}


def decode(
    events: list[InputEvent], keymap: KeymapName = "us", *, caps_lock: bool = False
) -> list[Decoded]:
    """What the events typed, consecutive text joined."""
    decoder = KeyDecoder(KEYMAPS[keymap], caps_lock=caps_lock)
    out: list[Decoded] = []
    for event in events:
        for item in decoder.feed(event):
            if isinstance(item, str) and out and isinstance(out[-1], str):
                out[-1] += item
            else:
                out.append(item)
    return out


def text_of(stream: str, keymap: KeymapName = "us", *, caps_lock: bool = False) -> str:
    out = decode(keys(stream), keymap, caps_lock=caps_lock)
    assert all(isinstance(item, str) for item in out), out
    return "".join(item for item in out if isinstance(item, str))


# --- recorded scans -----------------------------------------------------------------------


@pytest.mark.parametrize(("keymap", "gs"), sorted(RECORDED))
def test_recorded_gs1_scan_decodes_in_each_keymap(keymap: KeymapName, gs: str) -> None:
    assert decode(keys(RECORDED[keymap, gs]), keymap) == [PAYLOAD, END_OF_SCAN]


def test_shift_held_over_several_capitals_and_right_shift_work_too() -> None:
    stream = "+RIGHTSHIFT A B C -RIGHTSHIFT D +LEFTSHIFT +RIGHTSHIFT E -LEFTSHIFT F -RIGHTSHIFT G"
    assert text_of(stream) == "ABCdEFg"


def test_german_gs_also_from_ctrl_with_the_key_that_types_a_bracket() -> None:
    # Some firmwares press Ctrl + the key typing `]` in the layout: AltGr+9 in QWERTZ.
    assert text_of("+LEFTCTRL +RIGHTALT 9 -RIGHTALT -LEFTCTRL", "de") == "\x1d"
    # Ctrl + Left Alt is AltGr, as on Windows: Ctrl+Alt+Q is @ in de.
    assert text_of("+LEFTCTRL +LEFTALT Q -LEFTALT -LEFTCTRL", "de") == "@"


def test_uk_layout_differs_from_us_at_hash_pound_quote_and_at() -> None:
    assert text_of(f"BACKSLASH {shifted('3', '2', 'APOSTROPHE', 'BACKSLASH')} 102ND", "uk") == (
        '#£"@~\\'
    )
    assert text_of(f"{shifted('3', '2', 'APOSTROPHE', 'BACKSLASH')}", "us") == '#@"|'
    assert text_of("+RIGHTALT 4 -RIGHTALT", "uk") == "€"


def test_german_and_french_letters_digits_and_symbols() -> None:
    assert text_of("Y Z MINUS SEMICOLON APOSTROPHE LEFTBRACE SLASH", "de") == "zyßöäü-"
    assert text_of(f"{shifted('7', '0', 'MINUS', 'BACKSLASH')} +RIGHTALT Q -RIGHTALT", "de") == (
        "/=?'@"
    )
    assert text_of(f"Q W A SEMICOLON 2 7 9 0 {shifted('1', '0')}", "fr") == "azqméèçà10"
    assert text_of("+RIGHTALT 0 -RIGHTALT +RIGHTALT 3 -RIGHTALT M COMMA DOT SLASH", "fr") == (
        "@#,;:!"
    )


def test_caps_lock_inverts_shift_on_letters_only() -> None:
    assert text_of(f"CAPSLOCK A B {shifted('C')} 1 CAPSLOCK D") == "ABc1d"
    assert text_of("A", caps_lock=True) == "A"
    assert text_of("CAPSLOCK APOSTROPHE MINUS", "de") == "Äß"
    # fr digits are still on Shift with Caps Lock on, and é stays é.
    assert text_of(f"CAPSLOCK 2 {shifted('2')} Q", "fr") == "é2A"


def test_dead_keys_compose_or_type_the_accent() -> None:
    assert text_of("GRAVE SPACE GRAVE A EQUAL E +LEFTSHIFT EQUAL -LEFTSHIFT A", "de") == "^âéà"
    assert text_of("GRAVE X GRAVE GRAVE", "de") == "^x^^"
    assert text_of(f"LEFTBRACE E {shifted('LEFTBRACE')} I", "fr") == "êï"
    assert text_of("+RIGHTALT 2 -RIGHTALT SPACE +RIGHTALT 2 -RIGHTALT N", "fr") == "~ñ"
    # A dead key left pending when the scan ends is typed before the end.
    assert decode(keys("A GRAVE ENTER"), "de") == ["a^", END_OF_SCAN]


def test_control_characters_from_ctrl() -> None:
    assert text_of("+LEFTCTRL A -LEFTCTRL") == "\x01"
    assert text_of("+LEFTCTRL +LEFTSHIFT 6 -LEFTSHIFT -LEFTCTRL") == "\x1e"  # RS, Ctrl+^
    assert text_of("+LEFTCTRL +LEFTSHIFT 2 -LEFTSHIFT -LEFTCTRL") == "\x00"  # Ctrl+@
    assert text_of("+RIGHTCTRL LEFTBRACE BACKSLASH RIGHTBRACE -RIGHTCTRL", "fr") == "\x1b\x1c\x1d"
    assert text_of("+LEFTCTRL Q -LEFTCTRL", "fr") == "\x01"  # the AZERTY `a` key


def test_alt_numpad_codes_as_windows_types_them() -> None:
    assert text_of("+LEFTALT KP2 KP9 -LEFTALT") == "\x1d"
    assert text_of("+LEFTALT KP0 KP2 KP3 KP3 -LEFTALT +LEFTALT KP1 KP3 KP0 -LEFTALT") == "éé"
    assert text_of("+LEFTALT KP0 KP1 KP2 KP8 -LEFTALT") == "€"
    assert text_of("+RIGHTALT KP6 KP5 -RIGHTALT") == "A"  # either Alt in us
    assert text_of("+LEFTALT -LEFTALT A") == "a"
    assert alt_code_char("0129") == "\x81"  # undefined in Windows-1252: the C1 control
    (fault,) = decode(keys("+LEFTALT KP3 KP0 KP0 -LEFTALT"))
    assert fault == KeyFault("Alt+numpad code 300 is not a character (0-255)")
    (fault,) = decode(keys("+LEFTALT " + "KP0 " * 30 + "KP1 -LEFTALT"))
    assert isinstance(fault, KeyFault)


def test_numpad_types_digits_whatever_num_lock_says() -> None:
    assert text_of("NUMLOCK KP1 KP2 NUMLOCK KP3 KPDOT KPSLASH KPASTERISK KPMINUS KPPLUS") == (
        "123./*-+"
    )
    assert text_of("KPDOT", "de") == ","


def test_releases_repeats_and_other_event_types_type_nothing() -> None:
    events = [
        InputEvent(EV_MSC, 4, 0x70004),
        InputEvent(EV_KEY, key_code("KEY_A"), 1),
        InputEvent(EV_KEY, key_code("KEY_A"), KEY_REPEAT),
        InputEvent(EV_KEY, key_code("KEY_A"), KEY_REPEAT),
        InputEvent(EV_KEY, key_code("KEY_A"), 0),
        InputEvent(EV_KEY, key_code("KEY_B"), 7),  # not a key value
    ]
    assert decode(events) == ["a"]


def test_unmapped_keys_are_faults_naming_the_key_code() -> None:
    out = decode(keys("A F13 B ENTER"))
    assert out == ["a", KeyFault("unmapped key code 183 (KEY_F13) in keymap us"), "b", END_OF_SCAN]
    cases: dict[tuple[str, KeymapName], str] = {
        ("+LEFTALT A -LEFTALT", "us"): "unmapped key code 30 (KEY_A) with Alt in keymap us",
        ("+RIGHTALT A -RIGHTALT", "us"): "unmapped key code 30 (KEY_A) with Alt in keymap us",
        ("+RIGHTALT A -RIGHTALT", "de"): "unmapped key code 30 (KEY_A) with AltGr in keymap de",
        ("+LEFTCTRL 1 -LEFTCTRL", "fr"): "unmapped key code 2 (KEY_1) with Ctrl in keymap fr",
        ("+LEFTMETA A -LEFTMETA", "uk"): "unmapped key code 30 (KEY_A) with Meta in keymap uk",
        ("102ND", "us"): "unmapped key code 86 (KEY_102ND) in keymap us",
    }
    for (stream, keymap), reason in cases.items():
        assert decode(keys(stream), keymap) == [KeyFault(reason)], stream
    (fault,) = decode([InputEvent(EV_KEY, 600, 1)])
    assert fault == KeyFault("unmapped key code 600 in keymap us")
    match = UNMAPPED_KEY.fullmatch(cases["+LEFTALT A -LEFTALT", "us"])
    assert match is not None
    assert match.group("code", "key", "modifiers", "keymap") == ("30", "KEY_A", "Alt", "us")
    assert UNMAPPED_KEY.fullmatch("unmapped key code 600 in keymap us") is not None


def test_events_lost_spoil_the_scan_and_forget_held_modifiers() -> None:
    events = [
        *keys("+LEFTSHIFT A"),
        InputEvent(EV_SYN, SYN_DROPPED, 0),
        InputEvent(EV_KEY, key_code("KEY_B"), 1),  # before the next SYN_REPORT: not trusted
        InputEvent(EV_SYN, SYN_REPORT, 0),
        *keys("C ENTER"),
    ]
    assert decode(events) == ["A", KeyFault(EVENTS_LOST), "c", END_OF_SCAN]


def test_a_configured_terminator_key_ends_the_scan_and_enter_is_then_text() -> None:
    decoder = KeyDecoder(KEYMAPS["us"], terminators={key_code("KEY_TAB")})
    out = [item for event in keys("A ENTER B TAB") for item in decoder.feed(event)]
    assert out == ["a", "\r", "b", END_OF_SCAN]


# --- the typist: the decoder's inverse, for virtual scanners -----------------------------

ALPHABET = sorted(set(string.printable) - set("\t\n\r\x0b\x0c") | set("\x1déèàçâêäöüßÄÖÜ€£§°µ²"))


@pytest.mark.parametrize("control", ["ctrl", "alt"])
@pytest.mark.parametrize("keymap", sorted(KEYMAPS))
@given(text=st.text(alphabet=st.sampled_from(ALPHABET), max_size=40))
def test_typed_text_decodes_back_in_every_keymap(
    keymap: KeymapName, control: str, text: str
) -> None:
    typist = KeyTypist(KEYMAPS[keymap], control="alt" if control == "alt" else "ctrl")
    expected: list[Decoded] = [text, END_OF_SCAN] if text else [END_OF_SCAN]
    assert decode(typist.events(text), keymap) == expected


def test_typist_uses_the_documented_strokes() -> None:
    us = KeyTypist(KEYMAPS["us"])
    assert us.events(PAYLOAD) == keys(RECORDED["us", "ctrl"])
    assert KeyTypist(KEYMAPS["fr"]).events(PAYLOAD) == keys(RECORDED["fr", "ctrl"])
    assert KeyTypist(KEYMAPS["de"], control="alt").events(PAYLOAD) == keys(RECORDED["de", "alt"])
    assert us.char_events("\r") == keys("+LEFTCTRL M -LEFTCTRL")  # Enter only ever ends a scan
    with pytest.raises(ValueError, match="cannot type"):
        us.char_events("\u4e2d")


# --- input_event records -------------------------------------------------------------------


def test_record_layout_and_ioctl_numbers_are_linux_s() -> None:
    if sys.maxsize > 2**32:
        assert INPUT_EVENT.size == 24
    assert (EVIOCGVERSION, EVIOCGID, EVIOCGRAB) == (0x80044501, 0x80084502, 0x40044590)
    assert eviocgname(256) == 0x81004506
    assert (UI_DEV_CREATE, UI_DEV_SETUP) == (0x5501, 0x405C5503)
    assert (UI_SET_EVBIT, UI_SET_KEYBIT) == (0x40045564, 0x40045565)


HEADER = Path("/usr/include/linux/input-event-codes.h")


@pytest.mark.skipif(not HEADER.exists(), reason=f"{HEADER} is not installed (linux-libc-dev)")
def test_key_codes_match_the_kernel_header() -> None:
    defined = {
        name: int(value)
        for name, value in re.findall(r"#define (KEY_\w+)\s+(\d+)\b", HEADER.read_text())
    }
    assert {name: defined[name] for name in KEY_CODES} == KEY_CODES


@given(
    events=st.lists(
        st.tuples(st.integers(0, 0x1F), st.integers(0, 0x2FF), st.integers(-(2**31), 2**31 - 1)),
        max_size=30,
    ),
    cuts=st.lists(st.integers(0, 1000)),
)
def test_parser_result_does_not_depend_on_how_bytes_are_split(
    events: list[tuple[int, int, int]], cuts: list[int]
) -> None:
    wanted = [InputEvent(*e) for e in events]
    data = encode(wanted)
    parser = EventParser()
    got: list[InputEvent] = []
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        got += parser.feed(data[start:cut])
        start = cut
    assert got == wanted
    assert not parser.pending


# --- framing decoded keys, and double reads ----------------------------------------------


def test_key_framer_carries_a_fault_to_the_end_of_its_scan() -> None:
    f = KeyScanFramer(max_frame=8)
    bad = KeyFault("unmapped key code 183 (KEY_F13) in keymap us")
    assert f.push("ab") == []
    assert f.push(bad) == []
    assert f.push(KeyFault("a second fault")) == []  # the first one is the reason
    assert f.push("c") == []
    assert f.push(END_OF_SCAN) == [Frame(b"abc", bad.reason)]
    assert f.push("ok") == []
    assert f.push(END_OF_SCAN) == [Frame(b"ok")]
    assert f.push(END_OF_SCAN) == []  # an empty scan is no scan, as for serial
    assert f.push(bad) == []
    assert f.pending
    assert f.push(END_OF_SCAN) == [Frame(b"", bad.reason)]  # a scan of only a bad key


def test_key_framer_limits_expiry_and_flush_are_the_serial_framer_s() -> None:
    f = KeyScanFramer(max_frame=4)
    assert f.push("éé") == []  # 4 bytes of UTF-8
    assert f.push("x") == [Frame("éé".encode(), "frame longer than 4 bytes")]
    assert f.push(KeyFault("in the skipped tail")) == []
    assert f.push(END_OF_SCAN) == []  # reported already, tail skipped
    assert f.push("ab") == []
    assert f.expire() == Frame(b"ab", INCOMPLETE)
    assert f.push(KeyFault("lone")) == []
    assert f.expire() == Frame(b"", INCOMPLETE)
    assert not f.pending
    assert f.push("z") == []
    assert f.flush() == Frame(b"z", INCOMPLETE_AT_DISCONNECT)
    assert f.flush() is None


def test_double_read_filter_window_slides_with_each_repeat() -> None:
    f = DoubleReadFilter(0.5)
    assert not f.is_double(b"A", now=10.0)
    assert f.is_double(b"A", now=10.4)
    assert f.is_double(b"A", now=10.8)  # 0.4 s after the previous repeat
    assert not f.is_double(b"A", now=11.4)
    assert not f.is_double(b"B", now=11.5)
    assert not f.is_double(b"A", now=11.6)  # another barcode in between
    assert not DoubleReadFilter(0).is_double(b"A", now=1.0)
