"""A virtual keyboard-wedge scanner: a FIFO of input events, for tests and `lineside demo`.

`VirtualHidScanner` makes a FIFO behind a link (as udev's /dev/input/by-id/... is a link) and
types reads into it as raw `input_event` records, the keys chosen by `key_typist` for its
keymap. A `HidScanner` whose `hid` is the link reads it like a device, without a grab.
`unplug()` removes the link and closes the FIFO (the reader sees the end of the stream, as a
read fails with ENODEV on a real unplug); `plug()` makes a new FIFO behind the same link.
Writes never block: a FIFO nobody reads fills up, and `send` then raises `BlockingIOError`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from drivers.scanners.evdev_events import encode_event
from drivers.scanners.keymaps import KEYMAPS, KeymapName
from drivers.simulators.key_typist import KeyTypist

if TYPE_CHECKING:
    from collections.abc import Iterable

    from drivers.scanners.evdev_events import InputEvent

_numbers = itertools.count()


class VirtualHidScanner:
    """A FIFO of input events behind `link`; see the module docstring."""

    def __init__(
        self,
        link: Path | str,
        *,
        keymap: KeymapName = "us",
        control: Literal["ctrl", "alt"] = "ctrl",
    ) -> None:
        self.link = Path(link)
        self.typist = KeyTypist(KEYMAPS[keymap], control=control)
        self.fifo: Path | None = None
        self.writer = -1

    def plug(self) -> None:
        """Make a new FIFO, open its write end, and point the link at it."""
        fifo = self.link.with_name(f"{self.link.name}.fifo{os.getpid()}-{next(_numbers)}")
        os.mkfifo(fifo, 0o600)
        # Read-write, so that opening never blocks and never fails for want of a reader.
        self.writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        tmp = self.link.with_name(f"{self.link.name}.new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(fifo)
        tmp.replace(self.link)
        self.fifo = fifo

    def unplug(self) -> None:
        """Remove the link and the FIFO, and close the write end (safe to call twice)."""
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        if self.fifo is not None:
            with contextlib.suppress(FileNotFoundError):
                self.fifo.unlink()
            self.fifo = None
        if self.writer >= 0:
            os.close(self.writer)
            self.writer = -1

    def scan(self, text: str, *, end: bool = True) -> None:
        """Type one read (and the terminator key unless `end` is false)."""
        self.send(self.typist.events(text, end=end))

    def send(self, events: Iterable[InputEvent]) -> None:
        """Write events as the device would deliver them."""
        self.write(b"".join(encode_event(e) for e in events))

    def write(self, data: bytes) -> None:
        """Write raw bytes (a test may split a record on purpose)."""
        if self.writer < 0:
            raise RuntimeError(f"{self.link} is unplugged")
        written = os.write(self.writer, data)
        if written != len(data):
            raise BlockingIOError(f"{self.link}: the FIFO is full ({written} of {len(data)})")
