"""The serial/TCP barcode scanner driver: its link settings and `SerialScanner`.

`SerialScanner` opens a scanner through pyserial-asyncio-fast (`serial_for_url`), so `port`
may be a device path (`/dev/ttyUSB0`, a `/dev/serial/by-id/...` link) and `url` any pyserial
URL whose link has a file descriptor (`socket://host:port` for a TCP scanner, which
pyserial-asyncio-fast opens as a plain asyncio TCP connection; `rfc2217://` and `loop://` have no
descriptor and are refused at config time). Reads are cut into frames by
`drivers.scanners.framing.TerminatorFramer`; a double read of the same barcode within `dedup_ms` is
suppressed and counted. `stream()` is what an application runs: it never ends by itself and
reconnects with full-jitter backoff while keeping `health` up to date.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Literal, Self
from urllib.parse import urlsplit

import serial
import serial_asyncio_fast
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.base import (
    DeviceDisconnected,
    DeviceUnavailable,
    ScanReading,
)
from drivers.scanners.framing import TerminatorFramer
from drivers.scanners.scanner_link import ScannerLink

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator
    from types import TracebackType

log = logging.getLogger(__name__)

READ_SIZE = 4096
OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 5.0
STANDARD_BAUDRATES = frozenset(serial.Serial.BAUDRATES)
# pyserial URL handlers that are not file-descriptor based: pyserial-asyncio-fast cannot read them.
NO_FD_SCHEMES = frozenset({"rfc2217", "loop", "cp2110"})


def _latin1(value: str, what: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} must be bytes 0-255 (latin-1), got {value!r}") from exc


class ScannerSettings(BaseModel):
    """How to reach one barcode scanner and how to frame what it sends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: str | None = Field(
        default=None, description="Serial device path, e.g. /dev/ttyUSB0 (or use `url`)."
    )
    url: str | None = Field(
        default=None,
        description="A pyserial URL instead of `port`, e.g. socket://10.0.0.5:51236 for TCP.",
    )
    baudrate: int = Field(default=9600, description="Serial speed in baud (a standard rate).")
    bytesize: Literal[5, 6, 7, 8] = Field(default=8, description="Data bits per character.")
    parity: Literal["N", "E", "O"] = Field(
        default="N", description="Parity: N (none), E (even) or O (odd)."
    )
    stopbits: float = Field(default=1, description="Stop bits: 1, 1.5 or 2.")
    terminator: str = Field(
        default="\r\n",
        min_length=1,
        description='Bytes that end one scan (TOML "\\r\\n" gives real CR LF).',
    )
    max_frame: int = Field(
        default=512, gt=0, le=65536, description="Longest accepted scan in bytes."
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
    good_read: str | None = Field(
        default=None, description="Bytes sent to the scanner when a read was accepted."
    )
    nak: str | None = Field(
        default=None, description="Bytes sent to the scanner when a read was refused."
    )
    reconnect_max_s: float = Field(
        default=10.0, gt=0, description="Longest wait between reconnect attempts, in seconds."
    )

    @field_validator("baudrate")
    @classmethod
    def check_baudrate(cls, value: int) -> int:
        """Only standard rates: a typo like 96000 should fail at config time, not on the wire."""
        if value not in STANDARD_BAUDRATES:
            rates = ", ".join(str(r) for r in sorted(STANDARD_BAUDRATES))
            raise ValueError(f"{value} is not a standard baud rate ({rates})")
        return value

    @field_validator("stopbits")
    @classmethod
    def check_stopbits(cls, value: float) -> float:
        """Only the stop-bit counts a UART has."""
        if value not in (1, 1.5, 2):
            raise ValueError(f"stopbits must be 1, 1.5 or 2, got {value}")
        return value

    @field_validator("terminator", "good_read", "nak")
    @classmethod
    def check_bytes(cls, value: str | None) -> str | None:
        """Check that each character fits in one byte: these strings go on the wire as bytes."""
        if value is not None:
            _latin1(value, "the value")
        return value

    @field_validator("url")
    @classmethod
    def check_url(cls, value: str | None) -> str | None:
        """Refuse pyserial URLs whose link has no file descriptor for asyncio to wait on."""
        scheme = None if value is None else urlsplit(value).scheme.lower()
        if scheme in NO_FD_SCHEMES:
            raise ValueError(
                f"{scheme}:// is not supported: pyserial's {scheme} link has no file descriptor "
                "that asyncio can wait on (use socket://host:port for a TCP scanner)"
            )
        if scheme == "socket" and not _host_and_port(value):
            raise ValueError(
                "a TCP scanner's url is socket://host:port, e.g. socket://10.0.0.5:51236"
            )
        return value

    @model_validator(mode="after")
    def check_link(self) -> Self:
        """Exactly one of `port` and `url`."""
        if (self.port is None) == (self.url is None):
            raise ValueError(
                "give exactly one of port (a serial device path) or url (e.g. socket://host:port)"
            )
        return self

    @property
    def link(self) -> str:
        """What to open: the device path or the URL."""
        link = self.port if self.port is not None else self.url
        assert link is not None
        return link


class SerialScanner(ScannerLink):
    """A barcode scanner on a serial port or a TCP socket (implements `drivers.base.Scanner`).

    `async with scanner:` opens the link, `readings()` yields framed reads until the link drops
    (then raises `DeviceDisconnected`); `stream()` does all of that forever, reconnecting.
    `health` counts every yielded reading (error readings included; those also count as errors).
    """

    def __init__(self, id: str, settings: ScannerSettings) -> None:  # noqa: A002
        super().__init__(
            id, dedup_ms=settings.dedup_ms, reconnect_max_s=settings.reconnect_max_s, log=log
        )
        self.settings = settings
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._terminator = _latin1(settings.terminator, "terminator")
        self._good_read = None if settings.good_read is None else _latin1(settings.good_read, "")
        self._nak = None if settings.nak is None else _latin1(settings.nak, "")

    async def __aenter__(self) -> Self:
        if self._writer is not None:
            raise RuntimeError(f"scanner {self._id} is already open")
        s = self.settings
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_S):
                reader, writer = await serial_asyncio_fast.open_serial_connection(
                    url=s.link,
                    baudrate=s.baudrate,
                    bytesize=s.bytesize,
                    parity=s.parity,
                    stopbits=s.stopbits,
                )
        except TimeoutError as exc:
            reason = f"cannot open {s.link}: no answer within {OPEN_TIMEOUT_S:g} s"
            self._health.mark_disconnected(reason)
            raise DeviceUnavailable(reason) from exc
        except (OSError, ValueError) as exc:  # SerialException is an OSError
            reason = f"cannot open {s.link}: {exc}"
            self._health.mark_disconnected(reason)
            raise DeviceUnavailable(reason) from exc
        self._reader, self._writer = reader, writer
        self._health.mark_connected()
        log.debug("scanner %s: opened %s", self._id, s.link)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is None:
            return
        writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await writer.wait_closed()
        except OSError as close_exc:  # TimeoutError included
            # The link usually died already; the reason was recorded when it did.
            log.debug("scanner %s: closing: %s", self._id, close_exc)
        # Closed on purpose this adds no error; a lost link was recorded with its reason.
        self._health.mark_disconnected(None)
        log.debug("scanner %s: closed", self._id)

    async def readings(self) -> AsyncGenerator[ScanReading, None]:
        """Framed reads; raises `DeviceDisconnected` when the link drops.

        A partial frame left at a disconnect is yielded as an error reading first.
        """
        reader = self._reader
        if reader is None:
            raise RuntimeError(f"scanner {self._id} is not open (use `async with`)")
        s = self.settings
        framer = TerminatorFramer(terminator=self._terminator, max_frame=s.max_frame)
        frame_timeout = s.frame_timeout_ms / 1000
        while True:
            try:
                chunk = await _read_chunk(reader, frame_timeout if framer.pending else None)
            except OSError as exc:  # SerialException, ConnectionResetError, EIO ...
                reason = f"link lost: {exc}"
                lost: BaseException | None = exc
                break
            if chunk == b"":
                reason, lost = "link closed by the device", None
                break
            frames = [framer.expire()] if chunk is None else framer.feed(chunk)
            for reading in self._readings_of(frames):
                yield reading
        for reading in self._readings_of([framer.flush()]):
            yield reading
        self._health.mark_disconnected(reason)
        raise DeviceDisconnected(f"scanner {self._id}: {reason}") from lost

    def where(self) -> str:
        """The port or URL, as the logs name it."""
        return self.settings.link

    async def reply(self, *, accepted: bool) -> None:
        """Send the good-read (accepted) or NAK (refused) bytes, if configured and connected."""
        data = self._good_read if accepted else self._nak
        writer = self._writer
        if data is None:
            return
        if writer is None or writer.is_closing():
            log.debug("scanner %s: link down, reply not sent", self._id)
            return
        try:
            writer.write(data)
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await writer.drain()
        except OSError as exc:  # TimeoutError included
            # The reader notices a dead link and raises; a lost beep is not worth more.
            log.debug("scanner %s: reply not sent: %s", self._id, exc)


async def _read_chunk(reader: asyncio.StreamReader, idle_limit: float | None) -> bytes | None:
    """Read the next bytes (b"" at end of stream); None when `idle_limit` seconds passed idle."""
    try:
        async with asyncio.timeout(idle_limit) as deadline:
            return await reader.read(READ_SIZE)
    except TimeoutError:
        # A socket's own ETIMEDOUT is a TimeoutError too: that one is a lost link.
        if deadline.expired():
            return None
        raise


def _host_and_port(url: str | None) -> bool:
    """Whether `url` names a host and a numeric port (pyserial refuses it only at open)."""
    parts = urlsplit(url or "")
    try:
        return bool(parts.hostname) and parts.port is not None
    except ValueError:  # a port that is not a number, or out of range
        return False
