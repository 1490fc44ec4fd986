"""The keyboard-wedge scanner driver fed raw input events through a FIFO, as a device would.

This machine's kernel has no uinput, so the device is a FIFO behind a by-id-like link
(`drivers.simulators.hid_scanner.VirtualHidScanner`); test_hid_uinput.py repeats the essentials
on a real input device where /dev/uinput exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hid_support import encode, keys
from pydantic import ValidationError
from support import wait_until
from test_hid_keys import PAYLOAD, RECORDED

from drivers.base import DeviceDisconnected, DeviceUnavailable, Scanner, ScanReading
from drivers.scanners.framing import INCOMPLETE, INCOMPLETE_AT_DISCONNECT
from drivers.scanners.hid import NO_BACK_CHANNEL, HidScanner, HidScannerSettings
from drivers.scanners.hid_device import NotAnInputDevice, open_input, probe_input
from drivers.scanners.keymaps import KEYMAPS, KeymapName
from drivers.simulators.hid_scanner import VirtualHidScanner
from drivers.simulators.key_typist import KeyTypist

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from drivers.scanners.evdev_events import InputEvent


@pytest.fixture
def kbd(tmp_path: Path) -> Iterator[VirtualHidScanner]:
    """A plugged-in FIFO scanner behind `tmp_path/usb-Test_Scanner-event-kbd`."""
    k = VirtualHidScanner(tmp_path / "usb-Test_Scanner-event-kbd")
    k.plug()
    try:
        yield k
    finally:
        k.unplug()


def on_fifo(kbd: VirtualHidScanner, **overrides: object) -> HidScanner:
    settings = HidScannerSettings.model_validate(
        {"hid": str(kbd.link), "reconnect_max_s": 0.2, **overrides}
    )
    return HidScanner("hid-1", settings)


def typed(text: str, keymap: KeymapName = "us", *, end: bool = True) -> list[InputEvent]:
    return KeyTypist(KEYMAPS[keymap]).events(text, end=end)


def open_fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


async def next_reading(readings: AsyncIterator[ScanReading]) -> ScanReading:
    async with asyncio.timeout(10):
        return await anext(readings)


@contextlib.asynccontextmanager
async def streaming(scanner: HidScanner) -> AsyncIterator[asyncio.Queue[ScanReading]]:
    """Run `scanner.stream()` in a task that queues the readings; cancel it at the end."""
    queue: asyncio.Queue[ScanReading] = asyncio.Queue()

    async def pump() -> None:
        async with contextlib.aclosing(scanner.stream()) as readings:
            async for reading in readings:
                queue.put_nowait(reading)

    task = asyncio.create_task(pump(), name=f"test-stream:{scanner.id}")
    try:
        yield queue
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def take(queue: asyncio.Queue[ScanReading]) -> ScanReading:
    async with asyncio.timeout(10):
        return await queue.get()


# --- settings ------------------------------------------------------------------------------


def test_settings_defaults_and_refusals() -> None:
    s = HidScannerSettings(hid="/dev/input/by-id/usb-X-event-kbd")
    assert (s.keymap, s.terminator_key, s.max_frame, s.frame_timeout_ms, s.dedup_ms) == (
        "us",
        "KEY_ENTER",
        512,
        300,
        500,
    )
    assert s.terminators == {28, 96}  # either Enter key
    assert HidScannerSettings(hid="x", terminator_key="KEY_TAB").terminators == {15}
    bad = {
        "good_read": ("\x06", "no back channel"),
        "nak": ("\x15", "no back channel"),
        "keymap": ("dvorak", "'us', 'uk', 'de' or 'fr'"),
        "terminator_key": ("KEY_NOPE", "not a key name"),
        "max_frame": (0, "greater than 0"),
        "frame_timeout_ms": (0, "greater than 0"),
        "port": ("/dev/ttyUSB0", "Extra inputs are not permitted"),
    }
    for field, (value, message) in bad.items():
        with pytest.raises(ValidationError, match=message):
            HidScannerSettings.model_validate({"hid": "x", field: value})
    with pytest.raises(ValidationError, match="modifier or lock key"):
        HidScannerSettings(hid="x", terminator_key="KEY_LEFTSHIFT")
    with pytest.raises(ValidationError, match="hid"):
        HidScannerSettings.model_validate({})
    assert "no back channel" in NO_BACK_CHANNEL
    scanner: Scanner = HidScanner("hid-1", s)  # mypy checks the driver protocol here
    assert scanner.id == "hid-1"


# --- reading scans -------------------------------------------------------------------------


@pytest.mark.parametrize(("keymap", "gs"), sorted(RECORDED))
async def test_recorded_gs1_scan_through_a_fifo_in_each_keymap(
    kbd: VirtualHidScanner, keymap: KeymapName, gs: str
) -> None:
    scanner = on_fifo(kbd, keymap=keymap, frame_timeout_ms=10_000)
    async with scanner, contextlib.aclosing(scanner.readings()) as readings:
        data = encode(keys(RECORDED[keymap, gs]))
        for start in range(0, len(data), 1000):  # records split across writes
            kbd.write(data[start : start + 1000])
            await asyncio.sleep(0)
        reading = await next_reading(readings)
        assert (reading.data, reading.error, reading.source) == (PAYLOAD.encode(), None, "hid-1")
        assert reading.data == b"]d2010950110153000310ABC\x1d21XYZ"
    assert scanner.health.readings == 1
    assert scanner.health.errors == 0


async def test_a_fifo_is_read_without_a_grab_and_says_so_once(
    kbd: VirtualHidScanner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="drivers.scanners.hid")
    scanner = on_fifo(kbd)
    for _ in range(2):
        async with scanner:
            assert scanner.device is not None
            assert scanner.device.kind == "fifo"
        assert scanner.device is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "FIFO" in warnings[0].getMessage()
    assert "without a grab" in warnings[0].getMessage()
    assert "not grabbed" in str(probe_input(str(kbd.link)))


async def test_several_scans_in_one_write_and_accents_in_utf8(kbd: VirtualHidScanner) -> None:
    scanner = on_fifo(kbd, keymap="de", dedup_ms=0)
    async with scanner, contextlib.aclosing(scanner.readings()) as readings:
        kbd.send(typed("A1", "de") + typed("Größe^", "de") + keys("ENTER ENTER") + typed("A1"))
        got = [await next_reading(readings) for _ in range(3)]
    assert [r.data for r in got] == [b"A1", "Größe^".encode(), b"A1"]


async def test_partial_scan_times_out_and_is_not_glued_to_the_next(kbd: VirtualHidScanner) -> None:
    scanner = on_fifo(kbd, frame_timeout_ms=100)
    async with scanner, contextlib.aclosing(scanner.readings()) as readings:
        kbd.send(typed("PARTIAL", end=False))
        bad = await next_reading(readings)
        assert (bad.data, bad.error) == (b"PARTIAL", INCOMPLETE)
        kbd.send(typed("NEXT"))
        good = await next_reading(readings)
        assert (good.data, good.error) == (b"NEXT", None)
    assert scanner.health.errors == 1
    assert scanner.health.last_error == INCOMPLETE


async def test_an_unmapped_key_rejects_the_scan_naming_the_key_code(kbd: VirtualHidScanner) -> None:
    scanner = on_fifo(kbd, frame_timeout_ms=10_000)
    async with scanner, contextlib.aclosing(scanner.readings()) as readings:
        kbd.send(keys("A F13 B ENTER"))
        bad = await next_reading(readings)
        assert (bad.data, bad.error) == (b"ab", "unmapped key code 183 (KEY_F13) in keymap us")
        kbd.send(keys("F14 ENTER") + typed("OK"))  # a scan of nothing but the bad key
        lone = await next_reading(readings)
        assert (lone.data, lone.error) == (b"", "unmapped key code 184 (KEY_F14) in keymap us")
        good = await next_reading(readings)
        assert (good.data, good.error) == (b"OK", None)
    assert scanner.health.errors == 2


async def test_a_lone_bad_key_that_never_ends_is_still_reported(kbd: VirtualHidScanner) -> None:
    scanner = on_fifo(kbd, frame_timeout_ms=100)
    async with scanner, contextlib.aclosing(scanner.readings()) as readings:
        kbd.send(keys("F13"))
        bad = await next_reading(readings)
        assert (bad.data, bad.error) == (b"", INCOMPLETE)


async def test_overlong_scan_is_one_error_and_the_next_is_fine(kbd: VirtualHidScanner) -> None:
    scanner = on_fifo(kbd, max_frame=8, frame_timeout_ms=10_000)
    async with scanner, contextlib.aclosing(scanner.readings()) as readings:
        kbd.send(typed("x" * 12, end=False))
        kbd.send(keys("F13") + typed("yyy"))  # a bad key in the skipped tail: not reported again
        bad = await next_reading(readings)
        assert (bad.data, bad.error) == (b"x" * 8, "frame longer than 8 bytes")
        kbd.send(typed("OK1"))
        good = await next_reading(readings)
        assert (good.data, good.error) == (b"OK1", None)
    assert scanner.health.errors == 1


async def test_double_read_within_window_is_suppressed(kbd: VirtualHidScanner) -> None:
    scanner = on_fifo(kbd, dedup_ms=200)
    async with scanner, contextlib.aclosing(scanner.readings()) as readings:
        kbd.send(typed("D1") + typed("D1") + typed("E2"))
        assert (await next_reading(readings)).data == b"D1"
        assert (await next_reading(readings)).data == b"E2"
        assert scanner.suppressed == 1
        await asyncio.sleep(0.3)  # let the dedup window pass
        kbd.send(typed("E2"))
        assert (await next_reading(readings)).data == b"E2"
    assert scanner.suppressed == 1
    assert scanner.health.readings == 3


async def test_a_configured_terminator_key(kbd: VirtualHidScanner) -> None:
    scanner = on_fifo(kbd, terminator_key="KEY_TAB", frame_timeout_ms=10_000)
    async with scanner, contextlib.aclosing(scanner.readings()) as readings:
        kbd.send(keys("A ENTER B TAB"))
        reading = await next_reading(readings)
    assert (reading.data, reading.error) == (b"a\rb", None)


@pytest.mark.parametrize("keymap", sorted(KEYMAPS))
async def test_the_virtual_scanner_types_for_its_keymap(tmp_path: Path, keymap: KeymapName) -> None:
    virtual = VirtualHidScanner(tmp_path / f"{keymap}-event-kbd", keymap=keymap, control="alt")
    virtual.plug()
    try:
        scanner = HidScanner("v-1", HidScannerSettings(hid=str(virtual.link), keymap=keymap))
        async with scanner, contextlib.aclosing(scanner.readings()) as readings:
            virtual.scan(PAYLOAD)
            assert (await next_reading(readings)).data == PAYLOAD.encode()
    finally:
        virtual.unplug()
    virtual.unplug()  # twice is fine
    with pytest.raises(RuntimeError, match="unplugged"):
        virtual.scan("X")


async def test_reply_sends_nothing(kbd: VirtualHidScanner) -> None:
    scanner = on_fifo(kbd)
    async with scanner:
        await scanner.reply(accepted=True)
        await scanner.reply(accepted=False)
    await scanner.reply(accepted=True)


# --- unplug and replug ---------------------------------------------------------------------


async def test_unplug_reports_the_partial_scan_then_disconnects(kbd: VirtualHidScanner) -> None:
    scanner = on_fifo(kbd, frame_timeout_ms=10_000)
    async with scanner:
        readings = scanner.readings()
        kbd.send(typed("S1") + typed("HALF", end=False))
        assert (await next_reading(readings)).data == b"S1"
        kbd.unplug()
        partial = await next_reading(readings)
        assert (partial.data, partial.error) == (b"HALF", INCOMPLETE_AT_DISCONNECT)
        with pytest.raises(DeviceDisconnected, match="link closed by the device"):
            await next_reading(readings)
    assert not scanner.health.connected
    assert scanner.health.last_error == "link closed by the device"


async def test_open_failures_say_why(kbd: VirtualHidScanner, tmp_path: Path) -> None:
    regular = tmp_path / "events.bin"
    regular.write_bytes(encode(typed("X")))
    master, slave = os.openpty()
    try:
        refused = {
            str(regular): "not an input device (a regular file)",
            str(tmp_path): "not an input device (a directory)",
            "/dev/null": "not an input device (a character device with major number 1)",
            os.ttyname(slave): "not an input device (a character device with major number",
        }
        for path, message in refused.items():
            with pytest.raises(NotAnInputDevice) as refusal:
                open_input(path)
            assert str(refusal.value).startswith(path)
            assert message in str(refusal.value)
    finally:
        os.close(master)
        os.close(slave)
    kbd.unplug()
    scanner = on_fifo(kbd)
    with pytest.raises(DeviceUnavailable, match="no such device"):
        await scanner.__aenter__()
    assert not scanner.health.connected
    assert scanner.health.errors == 1
    assert scanner.health.last_error is not None
    assert str(kbd.link) in scanner.health.last_error
    with pytest.raises(RuntimeError, match="not open"):
        await anext(scanner.readings())


async def test_stream_survives_unplug_with_no_cpu_spin_and_logs_once(
    kbd: VirtualHidScanner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="drivers.scanners.hid")
    scanner = on_fifo(kbd, reconnect_max_s=0.5)
    async with streaming(scanner) as queue:
        await wait_until(lambda: scanner.health.connected, timeout=10, what="first connect")
        kbd.send(typed("BEFORE"))
        assert (await take(queue)).data == b"BEFORE"

        kbd.unplug()
        await wait_until(lambda: not scanner.health.connected, timeout=10, what="link down")
        errors_at_unplug = scanner.health.errors
        cpu = time.process_time()
        await asyncio.sleep(1.0)  # a resource check: a spinning retry loop would burn ~1 s
        assert time.process_time() - cpu < 0.3
        assert scanner.health.errors > errors_at_unplug  # it did keep trying
        assert "no such device" in (scanner.health.last_error or "")

        kbd.plug()
        await wait_until(lambda: scanner.health.connected, timeout=10, what="reconnect")
        kbd.send(typed("AFTER"))
        assert (await take(queue)).data == b"AFTER"
        assert scanner.health.reconnects == 1

    logs = [r for r in caplog.records if r.name == "drivers.scanners.hid"]
    warnings = [r.getMessage() for r in logs if r.levelno == logging.WARNING]
    assert [w for w in warnings if "link down" in w] == [
        "scanner hid-1: link down: scanner hid-1: link closed by the device"
    ]
    assert len([r for r in logs if "link back" in r.getMessage()]) == 1
    assert any("still down" in r.getMessage() for r in logs)
    assert all("BEFORE" not in r.getMessage() for r in logs if r.levelno > logging.DEBUG)


async def test_unplug_cycles_and_cancellation_leave_nothing_behind(kbd: VirtualHidScanner) -> None:
    before = open_fds()
    scanner = on_fifo(kbd, reconnect_max_s=0.05)
    async with streaming(scanner) as queue:
        await wait_until(lambda: scanner.health.connected, timeout=10, what="first connect")
        kbd.send(typed("START"))
        assert (await take(queue)).data == b"START"
        connected_fds = open_fds()
        for cycle in range(10):
            kbd.unplug()
            await wait_until(lambda: not scanner.health.connected, timeout=10, what="down")
            kbd.plug()
            await wait_until(lambda: scanner.health.connected, timeout=10, what="reconnect")
            kbd.send(typed(f"CYCLE{cycle}"))
            assert (await take(queue)).data == f"CYCLE{cycle}".encode()
        await wait_until(lambda: open_fds() == connected_fds, timeout=5, what="fds back")
        assert scanner.health.reconnects == 10
    # Cancelled while waiting on the device: the device is closed, its reader unregistered.
    assert not scanner.health.connected
    await wait_until(lambda: open_fds() == before, timeout=5, what="fds after cancel")


async def test_cancelling_a_waiting_read_unregisters_the_reader(kbd: VirtualHidScanner) -> None:
    loop = asyncio.get_running_loop()
    scanner = on_fifo(kbd)
    async with scanner:
        link = scanner._link
        assert link is not None

        async def consume() -> None:
            async for _ in scanner.readings():
                pass

        task = asyncio.create_task(consume())
        for _ in range(3):
            await asyncio.sleep(0)  # it reads nothing, registers a reader and waits on it
        assert not task.done()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        kbd.send(typed("UNREAD", end=False))
        cpu = time.process_time()
        await asyncio.sleep(0.5)  # a reader left behind would fire on the unread data, spinning
        assert time.process_time() - cpu < 0.2
        assert not loop.remove_reader(link.fd)
        assert scanner.health.connected


async def test_garbage_from_the_device_never_stops_the_stream(kbd: VirtualHidScanner) -> None:
    rng = random.Random(16)
    scanner = on_fifo(kbd, max_frame=64, frame_timeout_ms=50, reconnect_max_s=0.05)
    async with streaming(scanner) as queue:
        await wait_until(lambda: scanner.health.connected, timeout=10, what="connect")
        for _ in range(20):
            kbd.write(rng.randbytes(2400))
            await asyncio.sleep(0.01)
        # Garbage may leave modifiers held: a replug starts the device afresh.
        kbd.unplug()
        await wait_until(lambda: not scanner.health.connected, timeout=10, what="down")
        kbd.plug()
        await wait_until(lambda: scanner.health.connected, timeout=10, what="reconnect")
        kbd.send(typed("CLEAN"))
        async with asyncio.timeout(10):
            while (reading := await queue.get()).data != b"CLEAN":
                assert len(reading.data) <= 64


@pytest.mark.timeout(30)
async def test_a_device_flooding_events_does_not_starve_the_event_loop(
    kbd: VirtualHidScanner,
) -> None:
    # /dev/zero read as input events is an endless stream of SYN_REPORTs: no scan ever ends.
    scanner = on_fifo(kbd)
    async with scanner:

        async def consume() -> None:
            async for _ in scanner.readings():
                pass

        flood = await asyncio.create_subprocess_exec(
            "sh", "-c", f'exec cat /dev/zero > "{kbd.link}"'
        )
        task = asyncio.create_task(consume())
        try:
            for _ in range(5):
                await asyncio.sleep(0.05)  # returns only if the reader lets the loop turn
            assert not task.done()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            flood.kill()
            await flood.wait()
