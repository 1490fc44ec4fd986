"""Keyboard-wedge scanners for tests: recorded key streams written the way scanners send them.

`keys("RIGHTBRACE +LEFTSHIFT A -LEFTSHIFT ENTER")` writes a key stream as a scanner sends it:
`NAME` is a press and release of KEY_NAME, `+NAME` a press, `-NAME` a release; each key event
is followed by SYN_REPORT, as a USB keyboard's reports are. The device itself, a FIFO behind a
by-id-like link, is `drivers.simulators.hid_scanner.VirtualHidScanner` (the demo uses it too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drivers.scanners.evdev_events import (
    EV_KEY,
    EV_SYN,
    KEY_PRESS,
    KEY_RELEASE,
    SYN_REPORT,
    InputEvent,
    encode_event,
    key_code,
)

if TYPE_CHECKING:
    from collections.abc import Iterable


def _key(name: str, value: int) -> list[InputEvent]:
    return [InputEvent(EV_KEY, key_code(f"KEY_{name}"), value), InputEvent(EV_SYN, SYN_REPORT, 0)]


def keys(stream: str) -> list[InputEvent]:
    """The events of a recorded key stream (see the module docstring)."""
    events: list[InputEvent] = []
    for token in stream.split():
        if token.startswith("+"):
            events += _key(token[1:], KEY_PRESS)
        elif token.startswith("-") and len(token) > 1:
            events += _key(token[1:], KEY_RELEASE)
        else:
            events += _key(token, KEY_PRESS) + _key(token, KEY_RELEASE)
    return events


def encode(events: Iterable[InputEvent]) -> bytes:
    """Raw `input_event` records."""
    return b"".join(encode_event(e) for e in events)
