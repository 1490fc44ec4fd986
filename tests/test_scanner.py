"""The scanner driver against pty pairs and a local TCP server: framing, dedup, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING, Self

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import Field, ValidationError
from support import free_port, wait_until

from drivers.base import DeviceDisconnected, DeviceUnavailable, ScanReading
from drivers.scanners.framing import INCOMPLETE, INCOMPLETE_AT_DISCONNECT, Frame, TerminatorFramer
from drivers.scanners.serial import ScannerSettings, SerialScanner

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from support import Pty

TERM = b"\r\n"


def on_pty(pty: Pty, **overrides: object) -> SerialScanner:
    settings = ScannerSettings.model_validate(
        {"port": str(pty.link), "reconnect_max_s": 0.2, **overrides}
    )
    return SerialScanner("scan-1", settings)


def open_fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


async def next_reading(readings: AsyncIterator[ScanReading]) -> ScanReading:
    async with asyncio.timeout(10):
        return await anext(readings)


@contextlib.asynccontextmanager
async def streaming(scanner: SerialScanner) -> AsyncIterator[asyncio.Queue[ScanReading]]:
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


# --- settings -----------------------------------------------------------------------------


def test_settings_need_exactly_one_link() -> None:
    with pytest.raises(ValidationError, match="exactly one of port"):
        ScannerSettings()
    with pytest.raises(ValidationError, match="exactly one of port"):
        ScannerSettings(port="/dev/ttyUSB0", url="socket://10.0.0.5:51236")
    assert ScannerSettings(url="socket://10.0.0.5:51236").link == "socket://10.0.0.5:51236"
    assert ScannerSettings(port="/dev/ttyUSB0").link == "/dev/ttyUSB0"
    with pytest.raises(ValidationError, match="rfc2217:// is not supported"):
        ScannerSettings(url="rfc2217://10.0.0.5:2217")


@pytest.mark.parametrize("url", ["socket://10.0.0.5", "socket://:51236", "socket://h:port"])
def test_a_tcp_scanner_url_names_host_and_port(url: str) -> None:
    with pytest.raises(ValidationError, match=r"a TCP scanner's url is socket://host:port"):
        ScannerSettings(url=url)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("baudrate", 96000, "not a standard baud rate"),
        ("parity", "X", "parity"),
        ("bytesize", 9, "bytesize"),
        ("stopbits", 3, "stopbits must be 1, 1.5 or 2"),
        ("terminator", "", "at least 1 character"),
        ("terminator", "\u2028", "latin-1"),
        ("max_frame", 0, "greater than 0"),
        ("frame_timeout_ms", 0, "greater than 0"),
        ("colour", "red", "Extra inputs are not permitted"),
    ],
)
def test_settings_refuse_bad_values(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ScannerSettings.model_validate({"port": "/dev/ttyUSB0", field: value})


def test_settings_defaults_frozen_and_subclassable() -> None:
    s = ScannerSettings(port="/dev/ttyUSB0", stopbits=1.5, good_read="\x06")
    assert (s.baudrate, s.terminator, s.max_frame, s.dedup_ms) == (9600, "\r\n", 512, 500)
    with pytest.raises(ValidationError, match="frozen"):
        s.baudrate = 19200  # type: ignore[misc]

    class Configured(ScannerSettings):
        id: str = Field(description="Scanner id.")

    c = Configured(id="dock-in-1", url="socket://127.0.0.1:1")
    assert SerialScanner(c.id, c).id == "dock-in-1"
    with pytest.raises(ValidationError, match="exactly one of port"):
        Configured(id="x")


# --- the pure framer ----------------------------------------------------------------------


def test_framer_cuts_joins_and_skips_empty_frames() -> None:
    f = TerminatorFramer(terminator=TERM, max_frame=16)
    assert f.feed(b"A1\r\nB2\r\n\r\nC") == [Frame(b"A1"), Frame(b"B2")]
    assert f.pending
    assert f.feed(b"3\r") == []
    assert f.feed(b"\n") == [Frame(b"C3")]
    assert not f.pending


def test_framer_bounds_an_overlong_frame_and_reads_the_next() -> None:
    f = TerminatorFramer(terminator=TERM, max_frame=8)
    frames = []
    for _ in range(10_000):
        frames += f.feed(b"x" * 100)
        assert len(f._buffer) <= 8 + len(TERM)
    frames += f.feed(b"tail\r\nNEXT\r\n")
    assert frames == [Frame(b"x" * 8, "frame longer than 8 bytes"), Frame(b"NEXT")]
    # Over-long with its terminator in the same chunk.
    assert f.feed(b"123456789\r\nOK\r\n") == [
        Frame(b"12345678", "frame longer than 8 bytes"),
        Frame(b"OK"),
    ]


def test_framer_expire_and_flush_turn_partials_into_errors() -> None:
    f = TerminatorFramer(terminator=TERM, max_frame=8)
    assert f.expire() is None
    f.feed(b"PART")
    assert f.expire() == Frame(b"PART", INCOMPLETE)
    assert f.feed(b"NEXT\r\n") == [Frame(b"NEXT")]
    f.feed(b"x" * 20)  # over-long, reported, tail being skipped
    assert f.expire() is None  # already reported; skipping stops
    assert f.feed(b"GOOD\r\n") == [Frame(b"GOOD")]
    f.feed(b"HALF\r")
    assert f.flush() == Frame(b"HALF\r", INCOMPLETE_AT_DISCONNECT)
    assert f.flush() is None


@given(
    payloads=st.lists(st.binary(min_size=1, max_size=12)),
    cuts=st.lists(st.integers(min_value=0, max_value=400)),
    terminator=st.sampled_from([b"\r\n", b"\n", b"\x03", b"<END>"]),
)
def test_framer_result_does_not_depend_on_how_bytes_are_chunked(
    payloads: list[bytes], cuts: list[int], terminator: bytes
) -> None:
    # Only payloads whose first terminator is the one that ends them.
    payloads = [p for p in payloads if (p + terminator).find(terminator) == len(p)]
    stream = b"".join(p + terminator for p in payloads)
    f = TerminatorFramer(terminator=terminator, max_frame=12)
    frames: list[Frame] = []
    start = 0
    for cut in [*sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]:
        frames += f.feed(stream[start:cut])
        start = cut
    assert frames == [Frame(p) for p in payloads]
    assert not f.pending


# --- a scanner on a pty -------------------------------------------------------------------


async def test_pty_frames_several_scans_per_write_and_one_scan_over_writes(pty: Pty) -> None:
    scanner = on_pty(pty, frame_timeout_ms=10_000)
    async with scanner:
        readings = scanner.readings()
        pty.write(b"A1\r\nB2\r\n\r\n\r\nC3\r\n")
        got = [await next_reading(readings) for _ in range(3)]
        assert [r.data for r in got] == [b"A1", b"B2", b"C3"]
        assert all(r.source == "scan-1" and r.error is None for r in got)
        for part in (b"]C1LONG", b"SCAN", b"\r", b"\n"):
            pty.write(part)
            await asyncio.sleep(0.02)  # spread the parts over several reads
        reading = await next_reading(readings)
        assert (reading.data, reading.error) == (b"]C1LONGSCAN", None)
        assert scanner.health.connected
        assert scanner.health.readings == 4
        assert scanner.health.last_seen is not None
        await readings.aclose()
    assert not scanner.health.connected
    assert scanner.health.errors == 0


async def test_pty_overlong_frame_is_an_error_and_the_next_scan_is_fine(pty: Pty) -> None:
    scanner = on_pty(pty, max_frame=16, frame_timeout_ms=10_000)
    async with scanner, contextlib.aclosing(scanner.readings()) as readings:
        for _ in range(8):
            pty.write(b"Z" * 500)
            await asyncio.sleep(0)
        pty.write(b"\r\nOK1\r\n")
        bad = await next_reading(readings)
        assert (bad.data, bad.error) == (b"Z" * 16, "frame longer than 16 bytes")
        good = await next_reading(readings)
        assert (good.data, good.error) == (b"OK1", None)
    assert scanner.health.errors == 1
    assert scanner.health.last_error == "frame longer than 16 bytes"


async def test_pty_missing_terminator_times_out_and_is_not_glued_to_the_next(pty: Pty) -> None:
    scanner = on_pty(pty, frame_timeout_ms=100)
    async with scanner, contextlib.aclosing(scanner.readings()) as readings:
        pty.write(b"PARTIAL")
        bad = await next_reading(readings)
        assert (bad.data, bad.error) == (b"PARTIAL", INCOMPLETE)
        pty.write(b"NEXT\r\n")
        good = await next_reading(readings)
        assert (good.data, good.error) == (b"NEXT", None)


async def test_pty_double_read_within_window_is_suppressed(pty: Pty) -> None:
    scanner = on_pty(pty, dedup_ms=200)
    async with scanner, contextlib.aclosing(scanner.readings()) as readings:
        pty.write(b"D1\r\nD1\r\nE2\r\n")
        assert (await next_reading(readings)).data == b"D1"
        assert (await next_reading(readings)).data == b"E2"
        assert scanner.suppressed == 1
        # Another barcode in between makes the same one count again.
        pty.write(b"D1\r\n")
        assert (await next_reading(readings)).data == b"D1"
        await asyncio.sleep(0.3)  # let the dedup window pass
        pty.write(b"D1\r\n")
        assert (await next_reading(readings)).data == b"D1"
    assert scanner.suppressed == 1
    assert scanner.health.readings == 4


async def test_pty_reply_writes_good_read_and_nak(pty: Pty) -> None:
    scanner = on_pty(pty, good_read="\x06BEEP", nak="\x15")
    echoed = bytearray()

    def echoed_is(expected: bytes) -> bool:
        echoed.extend(pty.read_available())
        return bytes(echoed) == expected

    async with scanner:
        await scanner.reply(accepted=True)
        await wait_until(lambda: echoed_is(b"\x06BEEP"), timeout=10, what="good-read bytes")
        await scanner.reply(accepted=False)
        await wait_until(lambda: echoed_is(b"\x06BEEP\x15"), timeout=10, what="NAK bytes")
    await scanner.reply(accepted=True)  # link closed: ignored
    silent = on_pty(pty)
    async with silent:
        await silent.reply(accepted=True)
        await silent.reply(accepted=False)
    assert pty.read_available() == b""


async def test_open_failure_is_device_unavailable_with_the_reason(pty: Pty) -> None:
    pty.unplug()  # (the link goes with the device)
    scanner = on_pty(pty)
    with pytest.raises(DeviceUnavailable, match="cannot open"):
        await scanner.__aenter__()
    assert not scanner.health.connected
    assert scanner.health.errors == 1
    assert scanner.health.last_error is not None
    assert str(pty.link) in scanner.health.last_error
    with pytest.raises(RuntimeError, match="not open"):
        await anext(scanner.readings())


async def test_pty_unplug_raises_device_disconnected(pty: Pty) -> None:
    scanner = on_pty(pty)
    async with scanner:
        readings = scanner.readings()
        pty.write(b"S1\r\n")
        assert (await next_reading(readings)).data == b"S1"
        pty.unplug()
        with pytest.raises(DeviceDisconnected, match="link lost"):
            await next_reading(readings)
    assert not scanner.health.connected
    assert scanner.health.disconnected_since is not None
    assert scanner.health.last_error is not None


async def test_pty_stream_survives_unplug_with_no_cpu_spin_and_logs_once(
    pty: Pty, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="drivers.scanners.serial")
    scanner = on_pty(pty, reconnect_max_s=0.5)
    async with streaming(scanner) as queue:
        await wait_until(lambda: scanner.health.connected, timeout=10, what="first connect")
        pty.write(b"BEFORE\r\n")
        assert (await take(queue)).data == b"BEFORE"

        pty.unplug()
        await wait_until(lambda: not scanner.health.connected, timeout=10, what="link down")
        assert scanner.health.last_error is not None
        assert scanner.health.disconnected_since is not None
        errors_at_unplug = scanner.health.errors
        # A resource check, not a speed one: a retry loop that spins would burn ~1 s here.
        cpu = time.process_time()
        await asyncio.sleep(1.0)
        assert time.process_time() - cpu < 0.3
        assert scanner.health.errors > errors_at_unplug  # it did keep trying

        pty.plug()
        await wait_until(lambda: scanner.health.connected, timeout=10, what="reconnect")
        pty.write(b"AFTER\r\n")
        assert (await take(queue)).data == b"AFTER"
        assert scanner.health.reconnects == 1

    scanner_logs = [r for r in caplog.records if r.name == "drivers.scanners.serial"]
    warnings = [r for r in scanner_logs if r.levelno == logging.WARNING]
    backs = [r for r in scanner_logs if "link back" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert len(backs) == 1
    assert backs[0].levelno == logging.INFO
    assert any("still down" in r.getMessage() for r in scanner_logs)
    # Barcode contents appear only at DEBUG.
    assert all("BEFORE" not in r.getMessage() for r in scanner_logs if r.levelno > logging.DEBUG)


async def test_pty_twenty_unplug_cycles_leave_no_file_descriptors(pty: Pty) -> None:
    before = open_fds()
    scanner = on_pty(pty, reconnect_max_s=0.05)
    async with streaming(scanner) as queue:
        await wait_until(lambda: scanner.health.connected, timeout=10, what="first connect")
        pty.write(b"START\r\n")
        assert (await take(queue)).data == b"START"
        connected_fds = open_fds()
        for cycle in range(20):
            pty.unplug()
            await wait_until(lambda: not scanner.health.connected, timeout=10, what="down")
            pty.plug()
            await wait_until(lambda: scanner.health.connected, timeout=10, what="reconnect")
            pty.write(b"CYCLE%d\r\n" % cycle)
            assert (await take(queue)).data == b"CYCLE%d" % cycle
        await wait_until(lambda: open_fds() == connected_fds, timeout=5, what="fds back")
        assert scanner.health.reconnects == 20
    await wait_until(lambda: open_fds() == before, timeout=5, what="fds after close")


# --- a scanner on TCP (socket://) ---------------------------------------------------------


class TcpScanner:
    """A local TCP server standing in for an Ethernet scanner; one client at a time."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Self:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        while not self.connections.empty():
            _, writer = self.connections.get_nowait()
            writer.close()
        await self.server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.put_nowait((reader, writer))

    async def accepted(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with asyncio.timeout(10):
            return await self.connections.get()

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"


def on_tcp(url: str, **overrides: object) -> SerialScanner:
    settings = ScannerSettings.model_validate({"url": url, "reconnect_max_s": 0.2, **overrides})
    return SerialScanner("tcp-1", settings)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0, so the peer sees a TCP reset, not an orderly end."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def test_tcp_scanner_reads_replies_and_reports_a_partial_at_disconnect() -> None:
    async with TcpScanner() as server:
        scanner = on_tcp(server.url, good_read="\x06", max_frame=32, frame_timeout_ms=10_000)
        async with scanner:
            readings = scanner.readings()
            peer_reader, peer = await server.accepted()
            peer.write(b"T1\r\nT2\r\n" + b"L" * 1_000_000 + b"\r\nT3\r\n")
            got = [await next_reading(readings) for _ in range(4)]
            assert [(r.data, r.error) for r in got] == [
                (b"T1", None),
                (b"T2", None),
                (b"L" * 32, "frame longer than 32 bytes"),
                (b"T3", None),
            ]
            await scanner.reply(accepted=True)
            async with asyncio.timeout(10):
                assert await peer_reader.readexactly(1) == b"\x06"
            peer.write(b"HALF")
            await peer.drain()
            peer.close()
            half = await next_reading(readings)
            assert (half.data, half.error) == (b"HALF", INCOMPLETE_AT_DISCONNECT)
            with pytest.raises(DeviceDisconnected, match="closed by the device"):
                await next_reading(readings)
    assert scanner.health.errors == 3  # over-long, partial, disconnect


async def test_tcp_reset_raises_device_disconnected_and_refused_is_unavailable() -> None:
    async with TcpScanner() as server:
        scanner = on_tcp(server.url)
        async with scanner:
            readings = scanner.readings()
            _, peer = await server.accepted()
            peer.write(b"R1\r\n")
            assert (await next_reading(readings)).data == b"R1"
            reset(peer)
            with pytest.raises(DeviceDisconnected, match="link lost"):
                await next_reading(readings)
    nobody = on_tcp(f"socket://127.0.0.1:{free_port()}")
    with pytest.raises(DeviceUnavailable, match="cannot open"):
        await nobody.__aenter__()


async def test_tcp_stream_reconnects_after_the_scanner_drops_the_connection() -> None:
    async with TcpScanner() as server:
        scanner = on_tcp(server.url)
        async with streaming(scanner) as queue:
            _, peer = await server.accepted()
            peer.write(b"FIRST\r\n")
            assert (await take(queue)).data == b"FIRST"
            reset(peer)
            _, peer = await server.accepted()
            peer.write(b"SECOND\r\n")
            assert (await take(queue)).data == b"SECOND"
            assert scanner.health.reconnects == 1
            assert scanner.health.connected
            peer.close()
