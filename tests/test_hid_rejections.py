"""A keyboard-wedge scanner's own faults become `scan.rejected` reasons with codes of their own.

The faults are made by the driver's real decoder and framer from recorded key streams (not by
copying their text here), so a change of the driver's wording that the agent no longer
recognises fails here instead of turning into an uncoded `frame.error` on a plant's page.
"""

from __future__ import annotations

from typing import Any

import pytest
from hid_support import keys

from agent.config.scanners import StationRole
from agent.scanning.interpret import Receipt, Rejected, StationRules, interpret
from drivers.scanners.evdev_events import EV_SYN, SYN_DROPPED, InputEvent
from drivers.scanners.key_decoder import KeyDecoder
from drivers.scanners.key_framing import KeyScanFramer
from drivers.scanners.keymaps import KEYMAPS
from drivers.simulators.key_typist import KeyTypist

INBOUND = StationRules(StationRole.INBOUND)

GTIN = "09501101530003"


def framed(stream: str, keymap: str = "us") -> tuple[bytes, str | None]:
    """The one frame a recorded key stream makes: its data and its error."""
    decoder = KeyDecoder(KEYMAPS[keymap])  # type: ignore[index]
    framer = KeyScanFramer(max_frame=512)
    frames = [
        f for event in keys(stream) for item in decoder.feed(event) for f in framer.push(item)
    ]
    assert len(frames) == 1, frames
    return frames[0].data, frames[0].error


CASES: list[tuple[str, str, str, str, dict[str, Any]]] = [
    # (id, keymap, key stream, reason_code, reason_params)
    (
        "unmapped-key",
        "us",
        "A F13 B ENTER",
        "frame.unmapped_key",
        {"code": 183, "key": "KEY_F13", "modifiers": "", "keymap": "us"},
    ),
    (
        "unmapped-key-with-modifiers",
        "de",
        "+RIGHTALT +LEFTSHIFT A -LEFTSHIFT -RIGHTALT ENTER",
        "frame.unmapped_key",
        {"code": 30, "key": "KEY_A", "modifiers": "Shift+AltGr", "keymap": "de"},
    ),
    (
        "alt-code-out-of-range",
        "us",
        "+LEFTALT KP3 KP0 KP0 -LEFTALT ENTER",
        "frame.alt_code",
        {"digits": "300"},
    ),
]


@pytest.mark.parametrize(
    ("keymap", "stream", "code", "params"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_a_key_fault_is_rejected_with_its_own_code(
    keymap: str, stream: str, code: str, params: dict[str, Any]
) -> None:
    data, error = framed(stream, keymap)
    assert error is not None
    result = interpret(data, INBOUND, error=error)
    assert isinstance(result, Rejected)
    assert (result.data["reason_code"], result.data["reason_params"]) == (code, params)
    assert result.data["reason"] == error  # the driver's English, as for serial framing errors


def test_lost_events_are_rejected_with_their_own_code() -> None:
    decoder = KeyDecoder(KEYMAPS["us"])
    framer = KeyScanFramer(max_frame=512)
    dropped = InputEvent(EV_SYN, SYN_DROPPED, 0)  # the kernel's event buffer overflowed
    frames = [
        f
        for event in [*keys("A"), dropped, *keys("B ENTER")]
        for item in decoder.feed(event)
        for f in framer.push(item)
    ]
    assert len(frames) == 1
    result = interpret(frames[0].data, INBOUND, error=frames[0].error)
    assert isinstance(result, Rejected)
    assert (result.data["reason_code"], result.data["reason_params"]) == ("frame.events_lost", {})


@pytest.mark.parametrize("keymap", ["us", "uk", "de", "fr"])
@pytest.mark.parametrize("control", ["ctrl", "alt"])
def test_gs1_typed_in_every_keymap_with_either_gs_reads_as_gs1(keymap: str, control: str) -> None:
    text = f"]d201{GTIN}10ABC\x1d21XYZ"
    typist = KeyTypist(KEYMAPS[keymap], control=control)  # type: ignore[index, arg-type]
    decoder = KeyDecoder(KEYMAPS[keymap])  # type: ignore[index]
    framer = KeyScanFramer(max_frame=512)
    frames = [
        f
        for event in typist.events(text)
        for item in decoder.feed(event)
        for f in framer.push(item)
    ]
    assert [(f.data, f.error) for f in frames] == [(text.encode(), None)]
    result = interpret(frames[0].data, INBOUND)
    assert isinstance(result, Receipt)
    assert result.data["gtin"] == GTIN
    assert (result.data["lot"], result.data["serial"]) == ("ABC", "XYZ")
