"""Linux evdev input events: the `input_event` record, a keyboard's codes, and the ioctls.

An input device (`/dev/input/event*`) delivers fixed-size `struct input_event` records: a
`timeval` (two C longs), `u16 type`, `u16 code`, `s32 value` — 24 bytes on 64-bit Linux. A
keyboard sends `EV_KEY` (value 1 press, 0 release, 2 auto-repeat), `EV_MSC` (the raw scan code)
and `EV_SYN` (`SYN_REPORT` closes one report; `SYN_DROPPED` says the kernel's buffer overflowed
and events were lost). `EventParser` cuts a byte stream into records, holding back an incomplete
one (a FIFO may split anywhere); `encode_event` writes one (tests, a virtual scanner).

The ioctl numbers are computed as <asm-generic/ioctl.h> does (x86, ARM, RISC-V), so plain
`fcntl.ioctl` serves and no compiled extension is needed. Key codes and names are those of
<linux/input-event-codes.h>.
"""

from __future__ import annotations

import struct
import time
from typing import NamedTuple

INPUT_EVENT = struct.Struct("@llHHi")  # struct input_event: timeval, type, code, value

EV_SYN = 0x00
EV_KEY = 0x01
EV_MSC = 0x04
SYN_REPORT = 0
SYN_DROPPED = 3

KEY_RELEASE = 0
KEY_PRESS = 1
KEY_REPEAT = 2

INPUT_MAJOR = 13  # the character-device major number of every /dev/input node


def _ioc(direction: int, kind: str, number: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord(kind) << 8) | number


_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2
EVIOCGVERSION = _ioc(_IOC_READ, "E", 0x01, 4)  # int: answered only by evdev event devices
EVIOCGID = _ioc(_IOC_READ, "E", 0x02, 8)  # struct input_id: bustype, vendor, product, version
EVIOCGRAB = _ioc(_IOC_WRITE, "E", 0x90, 4)  # int: 1 grab exclusively, 0 release
INPUT_ID = struct.Struct("@HHHH")
NAME_SIZE = 256


def eviocgname(size: int = NAME_SIZE) -> int:
    """EVIOCGNAME(len): the device's name into a buffer of `size` bytes."""
    return _ioc(_IOC_READ, "E", 0x06, size)


# uinput (a virtual input device, for tests that have /dev/uinput)
UI_DEV_CREATE = _ioc(_IOC_NONE, "U", 1, 0)
UI_DEV_DESTROY = _ioc(_IOC_NONE, "U", 2, 0)
UINPUT_SETUP = struct.Struct("@HHHH80sI")  # struct uinput_setup: input_id, name, ff_effects_max
UI_DEV_SETUP = _ioc(_IOC_WRITE, "U", 3, UINPUT_SETUP.size)
UI_SET_EVBIT = _ioc(_IOC_WRITE, "U", 100, 4)
UI_SET_KEYBIT = _ioc(_IOC_WRITE, "U", 101, 4)


def ui_get_sysname(size: int = 64) -> int:
    """UI_GET_SYSNAME(len): the sysfs name (inputN) of the device a uinput fd created."""
    return _ioc(_IOC_READ, "U", 44, size)


# Key names by code, 0..127 as in <linux/input-event-codes.h> ("-" = no key has that code).
_NAMES_0_127 = """
RESERVED ESC 1 2 3 4 5 6 7 8 9 0 MINUS EQUAL BACKSPACE TAB Q W E R T Y U I O P LEFTBRACE
RIGHTBRACE ENTER LEFTCTRL A S D F G H J K L SEMICOLON APOSTROPHE GRAVE LEFTSHIFT BACKSLASH Z X C V
B N M COMMA DOT SLASH RIGHTSHIFT KPASTERISK LEFTALT SPACE CAPSLOCK F1 F2 F3 F4 F5 F6 F7 F8 F9 F10
NUMLOCK SCROLLLOCK KP7 KP8 KP9 KPMINUS KP4 KP5 KP6 KPPLUS KP1 KP2 KP3 KP0 KPDOT - ZENKAKUHANKAKU
102ND F11 F12 RO KATAKANA HIRAGANA HENKAN KATAKANAHIRAGANA MUHENKAN KPJPCOMMA KPENTER RIGHTCTRL
KPSLASH SYSRQ RIGHTALT LINEFEED HOME UP PAGEUP LEFT RIGHT END DOWN PAGEDOWN INSERT DELETE MACRO
MUTE VOLUMEDOWN VOLUMEUP POWER KPEQUAL KPPLUSMINUS PAUSE SCALE KPCOMMA HANGEUL HANJA YEN LEFTMETA
RIGHTMETA COMPOSE
""".split()  # noqa: SIM905 - the header's order, 128 names on a few lines
KEY_CODES: dict[str, int] = {
    f"KEY_{name}": code for code, name in enumerate(_NAMES_0_127) if name != "-"
} | {f"KEY_F{n}": 183 + n - 13 for n in range(13, 25)}
KEY_NAMES: dict[int, str] = {code: name for name, code in KEY_CODES.items()}


def key_code(name: str) -> int:
    """The code of a key name (`KEY_ENTER` → 28); `KeyError` for a name not known here."""
    return KEY_CODES[name]


def key_label(code: int) -> str:
    """`code 28 (KEY_ENTER)`, or `code 500` for a code without a name here."""
    name = KEY_NAMES.get(code)
    return f"code {code}" if name is None else f"code {code} ({name})"


class InputEvent(NamedTuple):
    """One input event, without its timestamp (nothing here needs the device's clock)."""

    type: int
    code: int
    value: int


def encode_event(event: InputEvent, *, stamp: float | None = None) -> bytes:
    """One `struct input_event` record (stamped now unless `stamp` is given)."""
    now = time.time() if stamp is None else stamp
    seconds = int(now)
    return INPUT_EVENT.pack(seconds, int((now - seconds) * 1e6), *event)


class EventParser:
    """Cuts a byte stream into input events; holds at most one incomplete record."""

    def __init__(self) -> None:
        self._partial = b""

    @property
    def pending(self) -> bool:
        """Whether part of a record is held back."""
        return bool(self._partial)

    def feed(self, chunk: bytes) -> list[InputEvent]:
        """Add received bytes; return the complete events they finish, in order."""
        data = self._partial + chunk if self._partial else chunk
        whole = len(data) - len(data) % INPUT_EVENT.size
        self._partial = data[whole:]
        return [
            InputEvent(kind, code, value)
            for _sec, _usec, kind, code, value in INPUT_EVENT.iter_unpack(data[:whole])
        ]
