"""The USB HID keyboard-wedge scanner driver: its settings and `HidScanner`.

A scanner in keyboard mode "types" each read. `HidScanner` reads its Linux input device
itself: it opens and grabs it exclusively (`hid_device` of this package: its keystrokes reach
nothing else while held), waits on the file descriptor with the event loop's reader (so
cancelling a read leaves nothing behind: no thread, no library read loop), cuts the bytes into
`input_event` records (`evdev_events`), decodes key events with the configured keymap
(`key_decoder`) and frames the text with the serial scanners' framer (`key_framing`: the same
frame limit, idle timeout and incomplete-frame errors). A scan ends at Enter (or the configured
terminator key); a key the keymap cannot type rejects the scan with a reason naming the key
code. Double reads are suppressed as for serial scanners (`double_reads`). `stream()`
reconnects after an unplug with full-jitter backoff and keeps `health` up to date. A HID
scanner has no back channel: `reply()` sends nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from drivers.base import (
    DeviceDisconnected,
    DeviceUnavailable,
    ScanReading,
)
from drivers.scanners.evdev_events import INPUT_EVENT, EventParser, key_code
from drivers.scanners.hid_device import InputDescription, InputLink, open_input
from drivers.scanners.key_decoder import ENTER_KEYS, MODIFIERS, KeyDecoder
from drivers.scanners.key_framing import KeyScanFramer
from drivers.scanners.keymaps import KEYMAPS, KeymapName
from drivers.scanners.scanner_link import ScannerLink

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator
    from types import TracebackType

    from drivers.scanners.framing import Frame

log = logging.getLogger(__name__)

READ_SIZE = 64 * INPUT_EVENT.size  # an evdev read must be whole records
NO_BACK_CHANNEL = (
    "a HID (keyboard-wedge) scanner has no back channel: nothing can be sent to it "
    "(its own beep confirms a decode; refusals show on the status page)"
)
NOT_TERMINATORS = MODIFIERS | {key_code(k) for k in ("KEY_CAPSLOCK", "KEY_NUMLOCK")}


class HidScannerSettings(BaseModel):
    """How to read one keyboard-wedge scanner and how to frame what it types."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hid: str = Field(
        min_length=1,
        description="The scanner's input device, e.g. /dev/input/by-id/usb-…-event-kbd "
        "(a FIFO of raw input_event records is read without the grab, with a warning).",
    )
    keymap: KeymapName = Field(
        default="us",
        description="The keyboard layout the scanner types for (its keyboard country): "
        "us, uk, de or fr.",
    )
    terminator_key: str = Field(
        default="KEY_ENTER",
        description="The key that ends a scan, as a Linux key name (KEY_ENTER: either Enter "
        "key; e.g. KEY_TAB for a scanner set to a Tab suffix).",
    )
    caps_lock: bool = Field(
        default=False,
        description="Decode as if Caps Lock were on at connect (for a scanner set to 'Caps "
        "Lock on'); the scanner's own Caps Lock key presses toggle it.",
    )
    max_frame: int = Field(
        default=512, gt=0, le=65536, description="Longest accepted scan in bytes (UTF-8)."
    )
    frame_timeout_ms: int = Field(
        default=300,
        gt=0,
        description="A partial scan idle this long is reported as an incomplete frame.",
    )
    dedup_ms: int = Field(
        default=500,
        ge=0,
        description="The same barcode again within this window is suppressed (0 = off).",
    )
    reconnect_max_s: float = Field(
        default=10.0, gt=0, description="Longest wait between reconnect attempts, in seconds."
    )
    good_read: str | None = Field(
        default=None, description="Not available for HID scanners (no back channel)."
    )
    nak: str | None = Field(
        default=None, description="Not available for HID scanners (no back channel)."
    )

    @field_validator("terminator_key")
    @classmethod
    def check_terminator_key(cls, value: str) -> str:
        """A key name evdev knows, and not a modifier or lock key."""
        try:
            code = key_code(value)
        except KeyError:
            raise ValueError(
                f"{value!r} is not a key name (e.g. KEY_ENTER, KEY_TAB, KEY_F12)"
            ) from None
        if code in NOT_TERMINATORS:
            raise ValueError(f"{value} is a modifier or lock key and cannot end a scan")
        return value

    @field_validator("good_read", "nak")
    @classmethod
    def refuse_replies(cls, value: str | None) -> None:
        """Nothing can be sent to a keyboard-wedge scanner."""
        if value is not None:
            raise ValueError(NO_BACK_CHANNEL)

    @property
    def terminators(self) -> frozenset[int]:
        """The key codes that end a scan."""
        code = key_code(self.terminator_key)
        return ENTER_KEYS if code in ENTER_KEYS else frozenset({code})


class HidScanner(ScannerLink):
    """A keyboard-wedge scanner on a Linux input device (implements `drivers.base.Scanner`).

    `async with scanner:` opens and grabs the device, `readings()` yields framed reads until
    the link drops (then raises `DeviceDisconnected`); `stream()` does all of that forever,
    reconnecting. `health` counts every yielded reading (error readings also count as errors).
    """

    def __init__(self, id: str, settings: HidScannerSettings) -> None:  # noqa: A002
        super().__init__(
            id, dedup_ms=settings.dedup_ms, reconnect_max_s=settings.reconnect_max_s, log=log
        )
        self.settings = settings
        self._link: InputLink | None = None
        self._fifo_warned = False

    @property
    def device(self) -> InputDescription | None:
        """What is open (device name and USB ids, or a FIFO); None while closed."""
        return None if self._link is None else self._link.description

    async def __aenter__(self) -> Self:
        if self._link is not None:
            raise RuntimeError(f"scanner {self._id} is already open")
        try:
            link = open_input(self.settings.hid)
        except DeviceUnavailable as exc:
            self._health.mark_disconnected(str(exc))
            raise
        self._link = link
        if link.description.kind == "fifo":
            level = logging.DEBUG if self._fifo_warned else logging.WARNING
            self._fifo_warned = True
            log.log(
                level,
                "scanner %s: %s is a FIFO, not an input device: reading raw input events "
                "without a grab",
                self._id,
                self.settings.hid,
            )
        self._health.mark_connected()
        log.debug("scanner %s: opened %s", self._id, link.description)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        link, self._link = self._link, None
        if link is None:
            return
        link.close()  # releases the grab
        # Closed on purpose this adds no error; a lost link was recorded with its reason.
        self._health.mark_disconnected(None)
        log.debug("scanner %s: closed", self._id)

    async def readings(self) -> AsyncGenerator[ScanReading, None]:
        """Framed reads; raises `DeviceDisconnected` when the link drops.

        A partial scan left at a disconnect is yielded as an error reading first.
        """
        link = self._link
        if link is None:
            raise RuntimeError(f"scanner {self._id} is not open (use `async with`)")
        s = self.settings
        parser = EventParser()
        decoder = KeyDecoder(KEYMAPS[s.keymap], terminators=s.terminators, caps_lock=s.caps_lock)
        framer = KeyScanFramer(max_frame=s.max_frame)
        frame_timeout = s.frame_timeout_ms / 1000
        while True:
            try:
                chunk = await _read_events(link.fd, frame_timeout if framer.pending else None)
            except OSError as exc:  # ENODEV once unplugged
                reason = f"link lost: {exc.strerror or exc}"
                lost: BaseException | None = exc
                break
            if chunk == b"":
                reason, lost = "link closed by the device", None  # a FIFO's writer went away
                break
            frames: list[Frame | None] = []
            if chunk is None:
                frames.append(framer.expire())
                decoder.reset_scan()
            else:
                for event in parser.feed(chunk):
                    for item in decoder.feed(event):
                        frames += framer.push(item)
            for reading in self._readings_of(frames):
                yield reading
        for reading in self._readings_of([framer.flush()]):
            yield reading
        self._health.mark_disconnected(reason)
        raise DeviceDisconnected(f"scanner {self._id}: {reason}") from lost

    def where(self) -> object:
        """The input device open (name and USB ids, or a FIFO), else the configured path."""
        return self.device or self.settings.hid

    async def reply(self, *, accepted: bool) -> None:
        """Nothing: a keyboard-wedge scanner has no back channel (its own beep is the answer)."""
        del accepted


async def _read_events(fd: int, idle_limit: float | None) -> bytes | None:
    """Read what is there (b"" at end of a FIFO); None when `idle_limit` seconds passed idle."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(idle_limit) as deadline:
            while True:
                try:
                    return os.read(fd, READ_SIZE)
                except BlockingIOError:
                    pass
                readable = loop.create_future()
                loop.add_reader(fd, _set_readable, readable)
                try:
                    await readable
                finally:
                    loop.remove_reader(fd)
    except TimeoutError:
        if deadline.expired():
            return None
        raise


def _set_readable(readable: asyncio.Future[None]) -> None:
    if not readable.done():
        readable.set_result(None)
