"""A keyboard-wedge scanner's device node: what the path is, the exclusive grab, and a probe.

`open_input(path)` opens an evdev event device read-only and non-blocking and grabs it
(EVIOCGRAB), so that while it is held its keystrokes reach no console, desktop or other program.
A FIFO is opened without a grab: tests and `lineside demo` feed raw `input_event` records
through one. Anything else is refused before it is opened (opening a serial port would already
toggle its modem lines). `probe_input(path)` makes the same checks for `lineside doctor`,
including the grab, and lets go again.

Errors (all `DeviceUnavailable`: a supervisor retries them like any link failure, and the
reason is the device's last error on the status page)::

    DeviceUnavailable            cannot open: missing, permission denied, gone
     ├── NotAnInputDevice        neither an evdev event device nor a FIFO
     └── DeviceGrabbed           another program holds the device exclusively (EBUSY)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from drivers.base import DeviceUnavailable
from drivers.scanners.evdev_events import (
    EVIOCGID,
    EVIOCGRAB,
    EVIOCGVERSION,
    INPUT_ID,
    INPUT_MAJOR,
    NAME_SIZE,
    eviocgname,
)

InputKind = Literal["evdev", "fifo"]
NAME_SHOWN = 80  # characters of the device's own name kept (it comes from the device)


class NotAnInputDevice(DeviceUnavailable):
    """The path is neither an evdev event device nor a FIFO of input events."""


class DeviceGrabbed(DeviceUnavailable):
    """Another program holds the input device exclusively."""


@dataclass(frozen=True, slots=True)
class InputDescription:
    """What was opened: an event device (with its name and USB ids) or a FIFO."""

    path: str
    kind: InputKind
    name: str = ""
    vendor: int | None = None
    product: int | None = None

    def __str__(self) -> str:
        if self.kind == "fifo":
            return f"{self.path} (a FIFO of input events, not grabbed)"
        ids = "" if self.vendor is None else f" {self.vendor:04x}:{self.product or 0:04x}"
        return f"{self.path} ({self.name or 'unnamed'}{ids})"


@dataclass(slots=True)
class InputLink:
    """An open input device (grabbed) or FIFO; `close()` releases and closes it."""

    fd: int
    description: InputDescription

    @property
    def grabbed(self) -> bool:
        """Whether the device is held exclusively (never for a FIFO)."""
        return self.description.kind == "evdev" and self.fd >= 0

    def close(self) -> None:
        """Release the grab and close; safe to call twice and after an unplug."""
        fd, self.fd = self.fd, -1
        if fd < 0:
            return
        if self.description.kind == "evdev":
            with contextlib.suppress(OSError):  # ENODEV once unplugged; closing releases anyway
                fcntl.ioctl(fd, EVIOCGRAB, 0)
        os.close(fd)


def open_input(path: str) -> InputLink:
    """Open and grab an input device, or open a FIFO; see the module docstring."""
    try:
        kind = _kind(path, Path(path).stat())
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise DeviceUnavailable(f"cannot open {path}: {_why(exc)}") from exc
    try:
        return _opened(fd, path, kind)
    except BaseException:
        os.close(fd)
        raise


def probe_input(path: str) -> InputDescription:
    """Check that `path` can be opened and grabbed as a scanner, and let it go again."""
    link = open_input(path)
    link.close()
    return link.description


def _opened(fd: int, path: str, kind: InputKind) -> InputLink:
    # The link may have moved between the check and the open: check what was opened.
    if _kind(path, os.fstat(fd)) != kind:
        raise NotAnInputDevice(f"{path} changed while it was opened")
    if kind == "fifo":
        return InputLink(fd, InputDescription(path, "fifo"))
    description = _describe(fd, path)
    _grab(fd, path)
    return InputLink(fd, description)


def _kind(path: str, st: os.stat_result) -> InputKind:
    if stat.S_ISFIFO(st.st_mode):
        return "fifo"
    if stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == INPUT_MAJOR:
        return "evdev"
    if stat.S_ISCHR(st.st_mode):
        what = f"a character device with major number {os.major(st.st_rdev)}"
    elif stat.S_ISREG(st.st_mode):
        what = "a regular file"
    elif stat.S_ISDIR(st.st_mode):
        what = "a directory"
    else:
        what = "not a device"
    raise NotAnInputDevice(
        f"{path} is not an input device ({what}): give the scanner's "
        "/dev/input/by-id/...-event-kbd link"
    )


def _describe(fd: int, path: str) -> InputDescription:
    try:
        fcntl.ioctl(fd, EVIOCGVERSION, bytearray(4))
    except OSError as exc:
        raise NotAnInputDevice(
            f"{path} is an input node but not an event device ({_why(exc)}): give the "
            "...-event-kbd link, not a mouse or joystick node"
        ) from exc
    name_buffer = bytearray(NAME_SIZE)
    ids = bytearray(INPUT_ID.size)
    try:
        fcntl.ioctl(fd, eviocgname(), name_buffer)
        fcntl.ioctl(fd, EVIOCGID, ids)
    except OSError:
        return InputDescription(path, "evdev")
    raw_name = name_buffer.split(b"\0", 1)[0].decode("utf-8", "replace")
    name = "".join(c for c in raw_name if c.isprintable())[:NAME_SHOWN]
    _bus, vendor, product, _version = INPUT_ID.unpack(ids)
    return InputDescription(path, "evdev", name, vendor, product)


def _grab(fd: int, path: str) -> None:
    try:
        fcntl.ioctl(fd, EVIOCGRAB, 1)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise DeviceGrabbed(
                f"{path} is grabbed by another program (EBUSY): only one program can hold a "
                "scanner; stop the other reader (another lineside, a kiosk app, evtest --grab)"
            ) from exc
        raise DeviceUnavailable(f"cannot grab {path}: {_why(exc)}") from exc


def _why(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such device (unplugged? use a name from ls -l /dev/input/by-id/)"
    if isinstance(exc, PermissionError):
        return (
            "permission denied (this user needs read access to the scanner: a udev rule "
            "for it, or the input group)"
        )
    return exc.strerror or str(exc)
