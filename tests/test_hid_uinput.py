"""A real input device: a uinput keyboard read by `HidScanner`, grabbed so that no key leaks.

These need /dev/uinput (the uinput kernel module) and the right to use it; where it is missing
they are skipped with the reason, and the FIFO tests (test_hid_scanner.py) cover the decoding,
framing and reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hid_support import encode, keys
from support import wait_until
from test_hid_keys import PAYLOAD
from test_hid_scanner import streaming, take

from drivers.scanners.evdev_events import (
    EV_KEY,
    EVIOCGRAB,
    UI_DEV_CREATE,
    UI_DEV_DESTROY,
    UI_DEV_SETUP,
    UI_SET_EVBIT,
    UI_SET_KEYBIT,
    UINPUT_SETUP,
    ui_get_sysname,
)
from drivers.scanners.hid import HidScanner, HidScannerSettings
from drivers.scanners.hid_device import DeviceGrabbed, probe_input
from drivers.scanners.keymaps import KEYMAPS
from drivers.simulators.key_typist import KeyTypist

if TYPE_CHECKING:
    from collections.abc import Iterator

    from drivers.scanners.evdev_events import InputEvent

UINPUT = Path("/dev/uinput")
pytestmark = pytest.mark.skipif(
    not os.access(UINPUT, os.R_OK | os.W_OK),
    reason=f"{UINPUT} is missing or not writable here (no uinput kernel module): "
    "the FIFO tests in test_hid_scanner.py cover decoding, framing and reconnects",
)
BUS_USB = 0x03
VENDOR, PRODUCT = 0x1209, 0x0016  # pid.codes test ids


class VirtualKeyboard:
    """A keyboard made with uinput; `node` is its /dev/input/eventN."""

    def __init__(self) -> None:
        self.fd = os.open(UINPUT, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.ioctl(self.fd, UI_SET_EVBIT, EV_KEY)
            for code in range(1, 249):
                fcntl.ioctl(self.fd, UI_SET_KEYBIT, code)
            name = b"Lineside test scanner"
            fcntl.ioctl(
                self.fd, UI_DEV_SETUP, UINPUT_SETUP.pack(BUS_USB, VENDOR, PRODUCT, 1, name, 0)
            )
            fcntl.ioctl(self.fd, UI_DEV_CREATE)
            sysname = bytearray(64)
            fcntl.ioctl(self.fd, ui_get_sysname(len(sysname)), sysname)
            sys_dir = Path("/sys/devices/virtual/input") / sysname.split(b"\0")[0].decode()
            (event,) = sys_dir.glob("event*")
            self.node = Path("/dev/input") / event.name
        except BaseException:
            os.close(self.fd)
            raise

    def send(self, events: list[InputEvent]) -> None:
        os.write(self.fd, encode(events))

    def unplug(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.ioctl(self.fd, UI_DEV_DESTROY)
            os.close(self.fd)
            self.fd = -1


@pytest.fixture
def keyboard() -> Iterator[VirtualKeyboard]:
    kb = VirtualKeyboard()
    try:
        yield kb
    finally:
        kb.unplug()


async def node_ready(kb: VirtualKeyboard) -> str:
    await wait_until(lambda: os.access(kb.node, os.R_OK), timeout=10, what=f"{kb.node}")
    return str(kb.node)


def on_node(path: str | Path, **overrides: object) -> HidScanner:
    settings = HidScannerSettings.model_validate(
        {"hid": str(path), "reconnect_max_s": 0.2, "frame_timeout_ms": 10_000, **overrides}
    )
    return HidScanner("uinput-1", settings)


def pending_events(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""


async def test_a_real_device_is_read_grabbed_and_leaks_no_key(keyboard: VirtualKeyboard) -> None:
    node = await node_ready(keyboard)
    observer = os.open(node, os.O_RDONLY | os.O_NONBLOCK)  # another program on the same device
    try:
        scanner = on_node(node, dedup_ms=0)
        async with scanner, contextlib.aclosing(scanner.readings()) as readings:
            assert scanner.device is not None
            assert scanner.device.kind == "evdev"
            assert (scanner.device.vendor, scanner.device.product) == (VENDOR, PRODUCT)
            for control in ("ctrl", "alt"):
                keyboard.send(KeyTypist(KEYMAPS["us"], control=control).events(PAYLOAD))
                async with asyncio.timeout(10):
                    reading = await anext(readings)
                assert (reading.data, reading.error) == (PAYLOAD.encode(), None)
            assert pending_events(observer) == b"", "keystrokes leaked past the grab"
        # Released: the same keys reach the other program again (so the check above meant it).
        keyboard.send(keys("A"))
        await wait_until(lambda: pending_events(observer) != b"", timeout=10, what="the key")
    finally:
        os.close(observer)


async def test_a_device_grabbed_by_another_program_says_so(keyboard: VirtualKeyboard) -> None:
    node = await node_ready(keyboard)
    holder = os.open(node, os.O_RDONLY | os.O_NONBLOCK)
    try:
        fcntl.ioctl(holder, EVIOCGRAB, 1)
        with pytest.raises(DeviceGrabbed, match="grabbed by another program"):
            probe_input(node)
        scanner = on_node(node)
        with pytest.raises(DeviceGrabbed, match="EBUSY"):
            await scanner.__aenter__()
        assert "grabbed by another program" in (scanner.health.last_error or "")
        fcntl.ioctl(holder, EVIOCGRAB, 0)
        assert probe_input(node).kind == "evdev"
    finally:
        os.close(holder)


async def test_unplug_and_replug_of_a_real_device(
    keyboard: VirtualKeyboard, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    link = tmp_path / "usb-Lineside_test_scanner-event-kbd"  # as udev's by-id link
    link.symlink_to(await node_ready(keyboard))
    scanner = on_node(link, reconnect_max_s=0.1)
    second: VirtualKeyboard | None = None
    try:
        async with streaming(scanner) as queue:
            await wait_until(lambda: scanner.health.connected, timeout=10, what="connect")
            keyboard.send(KeyTypist(KEYMAPS["us"]).events("BEFORE"))
            assert (await take(queue)).data == b"BEFORE"
            keyboard.unplug()
            link.unlink()
            await wait_until(lambda: not scanner.health.connected, timeout=10, what="down")
            second = VirtualKeyboard()
            link.symlink_to(await node_ready(second))
            await wait_until(lambda: scanner.health.connected, timeout=10, what="reconnect")
            second.send(KeyTypist(KEYMAPS["us"]).events("AFTER"))
            assert (await take(queue)).data == b"AFTER"
            assert scanner.health.reconnects == 1
        downs = [r.getMessage() for r in caplog.records if "link down" in r.getMessage()]
        assert len(downs) == 1
        assert "link lost" in downs[0]  # ENODEV on read
    finally:
        if second is not None:
            second.unplug()
