"""The ZPL label printer driver: its settings and `ZplPrinter`, over raw TCP (port 9100).

`ZplPrinter` owns one TCP connection to a Zebra (or ZPL-compatible) printer. `send` writes a job,
`host_status` asks `~HS` and parses the answer (`drivers.printers.host_status`). What a
printer does with a job is only known from its status, and a Zebra stays silent when it is out
of media or its head is open, so `print_and_confirm` asks before and after sending:

1. before: the link is (re)opened with full-jitter backoff and the printer asked; a printer that
   cannot print (or does not answer) does not get the job: `sent` is False, it may be sent again;
2. the job is sent;
3. after: an answer without faults is `printed`; a fault or silence is a failure with `sent`
   True: the job may or may not come out, and only a person can tell.

Failure reasons: `paper out`, `ribbon out`, `head open`, `head too hot`, `buffer full`,
`paused` (from the answer), `no answer` (silence within `status_timeout_ms`), `unreachable`
(no connection), `connection lost`, `bad answer` (not a host status). Any failed exchange drops
the link, so a late answer can never be taken for the next one.

Errors (of `send`, `host_status`, `connect`): `DeviceUnavailable` (cannot connect),
`DeviceDisconnected` (the link broke), `DeviceProtocolError` (an unusable answer), and
`PrinterSilent` (no answer in time).
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from drivers.backoff import Backoff
from drivers.base import (
    DeviceDisconnected,
    DeviceHealth,
    DeviceProtocolError,
    DeviceUnavailable,
    DriverError,
)
from drivers.printers.host_status import (
    STATUS_REQUEST,
    HostStatus,
    PrinterSilent,
    answer_complete,
    parse_host_status,
)

if TYPE_CHECKING:
    from types import TracebackType

log = logging.getLogger(__name__)

DEFAULT_PORT = 9100
READ_SIZE = 256
CLOSE_TIMEOUT_S = 2.0


class ZplPrinterSettings(BaseModel):
    """How to reach one ZPL label printer and how long to wait for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["zpl"] = Field("zpl", description="Zebra ZPL over raw TCP.")
    url: str = Field(
        description='The printer\'s raw TCP port: "tcp://host:9100" (port 9100 when left out).'
    )
    connect_timeout_ms: int = Field(
        3000, ge=10, description="How long to wait for the TCP connection, in milliseconds."
    )
    status_timeout_ms: int = Field(
        3000,
        ge=10,
        description="How long to wait for the answer to ~HS; silence is the fault `no answer`.",
    )
    send_timeout_ms: int = Field(
        10000, ge=10, description="How long sending one job may take, in milliseconds."
    )
    connect_attempts: int = Field(
        3,
        ge=1,
        le=20,
        description="Connection attempts for one job before it fails as `unreachable`.",
    )
    reconnect_max_s: float = Field(
        10.0, gt=0, description="Longest wait between two connection attempts, in seconds."
    )

    @field_validator("url")
    @classmethod
    def check_url(cls, value: str) -> str:
        """A tcp:// URL with a host and, if given, a valid port."""
        parts = urlsplit(value)
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"{value!r} has an invalid port") from exc
        if parts.scheme != "tcp" or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f'a printer is reached as "tcp://host:9100", not {value!r}')
        if port == 0:
            raise ValueError(f"{value!r} has an invalid port")
        return value

    @property
    def host(self) -> str:
        """The printer's host name or address."""
        host = urlsplit(self.url).hostname
        assert host is not None
        return host

    @property
    def port(self) -> int:
        """The printer's TCP port."""
        return urlsplit(self.url).port or DEFAULT_PORT


@dataclass(frozen=True, slots=True)
class PrinterState:
    """Whether a printer can print now, and if not, why (`reason`, `detail`)."""

    ready: bool
    reason: str | None = None
    detail: str | None = None
    status: HostStatus | None = None

    @classmethod
    def down(cls, reason: str, detail: str, status: HostStatus | None = None) -> PrinterState:
        """A printer that cannot print, and why."""
        return cls(ready=False, reason=reason, detail=detail, status=status)


@dataclass(frozen=True, slots=True)
class PrintOutcome:
    """What became of one job.

    `sent` is False when the printer never got the job (sending it again cannot make a second
    label), True when it got it or may have. `status` is the printer's last answer, if any.
    """

    printed: bool
    sent: bool
    reason: str | None = None
    detail: str | None = None
    status: HostStatus | None = None

    @classmethod
    def failed(
        cls, reason: str | None, detail: str | None, *, sent: bool, status: HostStatus | None
    ) -> PrintOutcome:
        """A job that was not printed (or not confirmed), and why."""
        return cls(printed=False, sent=sent, reason=reason, detail=detail, status=status)


class ZplPrinter:
    """One ZPL printer on raw TCP: `async with printer:` connects; see the module docstring."""

    def __init__(
        self,
        id: str,  # noqa: A002 (the config calls it id)
        settings: ZplPrinterSettings,
        *,
        backoff_base_s: float = 0.2,
    ) -> None:
        self._id = id
        self.settings = settings
        self._health = DeviceHealth(device=id)
        self._backoff = Backoff(base_s=backoff_base_s, cap_s=settings.reconnect_max_s)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()  # one exchange at a time on the one link
        self._down_reason: str | None = None

    @property
    def id(self) -> str:
        """The printer's configured id."""
        return self._id

    @property
    def health(self) -> DeviceHealth:
        """The link's health: readings count host status answers."""
        return self._health

    @property
    def connected(self) -> bool:
        """Whether the link is open."""
        return self._writer is not None and not self._writer.is_closing()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the link; `DeviceUnavailable` when the printer cannot be reached."""
        if self.connected:
            return
        s = self.settings
        where = f"{s.host}:{s.port}"
        try:
            async with asyncio.timeout(s.connect_timeout_ms / 1000):
                self._reader, self._writer = await asyncio.open_connection(s.host, s.port)
        except TimeoutError as exc:
            reason = f"cannot connect to {where}: no answer within {s.connect_timeout_ms} ms"
            self._health.mark_disconnected(reason)
            raise DeviceUnavailable(reason) from exc
        except OSError as exc:
            reason = f"cannot connect to {where}: {_os_error(exc)}"
            self._health.mark_disconnected(reason)
            raise DeviceUnavailable(reason) from exc
        self._health.mark_connected()
        log.debug("printer %s: connected to %s", self._id, where)

    async def close(self) -> None:
        """Close the link (closed on purpose: no error is recorded)."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is None:
            return
        writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await writer.wait_closed()
        except OSError as exc:  # TimeoutError included; the link often died already
            log.debug("printer %s: closing: %s", self._id, exc)
        self._health.mark_disconnected(None)

    def _drop(self, reason: str) -> None:
        """Abandon the link after a failed exchange: what is in flight can no longer be trusted."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
        self._health.mark_disconnected(reason)

    async def send(self, job: bytes) -> None:
        """Write one job; `DeviceDisconnected` when the link breaks (it may have been printed)."""
        writer = self._open_writer()
        try:
            writer.write(job)
            async with asyncio.timeout(self.settings.send_timeout_ms / 1000):
                await writer.drain()
        except OSError as exc:  # TimeoutError included
            reason = f"sending failed: {exc or type(exc).__name__}"
            self._drop(reason)
            raise DeviceDisconnected(f"printer {self._id}: {reason}") from exc
        except asyncio.CancelledError:
            self._drop("cancelled while sending")
            raise
        log.debug("printer %s: sent %d bytes", self._id, len(job))

    async def host_status(self) -> HostStatus:
        """Ask `~HS` and parse the answer; `PrinterSilent` when none comes in time."""
        writer = self._open_writer()
        reader = self._reader
        assert reader is not None
        timeout_ms = self.settings.status_timeout_ms
        answer = b""
        try:
            writer.write(STATUS_REQUEST)
            async with asyncio.timeout(timeout_ms / 1000):
                await writer.drain()
                while not answer_complete(answer):
                    chunk = await reader.read(READ_SIZE)
                    if not chunk:
                        raise DeviceDisconnected(f"printer {self._id}: link closed by the printer")
                    answer += chunk
            status = parse_host_status(answer)
        except TimeoutError as exc:
            self._drop(f"no answer to ~HS within {timeout_ms} ms")
            msg = f"printer {self._id}: no answer to ~HS within {timeout_ms} ms"
            raise PrinterSilent(msg) from exc
        except DriverError as exc:
            self._drop(str(exc))
            raise
        except OSError as exc:
            self._drop(f"link lost: {exc}")
            raise DeviceDisconnected(f"printer {self._id}: link lost: {exc}") from exc
        except asyncio.CancelledError:
            self._drop("cancelled during a status request")
            raise
        self._health.mark_seen()
        log.debug("printer %s: host status %r", self._id, answer)
        return status

    def _open_writer(self) -> asyncio.StreamWriter:
        writer = self._writer
        if writer is None or writer.is_closing():
            raise DeviceDisconnected(f"printer {self._id} is not connected")
        return writer

    async def state(self) -> PrinterState:
        """Whether the printer can print now: reconnects as needed, never raises `DriverError`."""
        async with self._lock:
            return await self._state()

    async def print_and_confirm(self, job: bytes) -> PrintOutcome:
        """Send one job if the printer can print it, and confirm it from the host status."""
        async with self._lock:
            before = await self._state()
            if not before.ready:
                return PrintOutcome.failed(
                    before.reason, before.detail, sent=False, status=before.status
                )
            try:
                await self.send(job)
                status = await self.host_status()
            except DriverError as exc:
                reason = _reason(exc)
                self._note_down(reason, str(exc))
                return PrintOutcome.failed(reason, str(exc), sent=True, status=before.status)
            if status.faults:
                reason, detail = self._fault(status)
                return PrintOutcome.failed(reason, detail, sent=True, status=status)
            self._note_up()
            return PrintOutcome(printed=True, sent=True, status=status)

    async def _state(self) -> PrinterState:
        """Open the link (full-jitter backoff between attempts) and ask the printer."""
        attempts = self.settings.connect_attempts
        for attempt in range(1, attempts + 1):
            try:
                await self.connect()
                status = await self.host_status()
            except PrinterSilent as exc:  # silence is the printer's answer: no retry
                self._note_down("no answer", str(exc))
                return PrinterState.down("no answer", str(exc))
            except DriverError as exc:  # unreachable, or a stale link (the printer restarted)
                if attempt == attempts:
                    reason = _reason(exc)
                    self._note_down(reason, str(exc))
                    return PrinterState.down(reason, str(exc))
                delay = self._backoff.next_delay()
                log.debug("printer %s: %s; retrying in %.2f s", self._id, exc, delay)
                await asyncio.sleep(delay)
                continue
            self._backoff.reset()
            if status.faults:
                return PrinterState.down(*self._fault(status), status)
            self._note_up()
            return PrinterState(ready=True, status=status)
        raise AssertionError("unreachable: the last attempt returns")  # pragma: no cover

    def _fault(self, status: HostStatus) -> tuple[str, str]:
        reason = status.faults[0]
        detail = f"printer {self._id}: {', '.join(status.faults)}"
        self._health.record_error(detail)
        self._note_down(reason, detail)
        return reason, detail

    def _note_down(self, reason: str, detail: str) -> None:
        """Log once when the printer stops printing (or the reason changes), DEBUG after."""
        if self._down_reason == reason:
            log.debug("%s", detail)
        else:
            log.warning("printer %s cannot print: %s (%s)", self._id, reason, detail)
        self._down_reason = reason

    def _note_up(self) -> None:
        if self._down_reason is not None:
            log.info("printer %s is ready again", self._id)
        self._down_reason = None


def _os_error(exc: OSError) -> str:
    """`Connection refused` rather than asyncio's "Connect call failed ('10.0.0.30', 9100)"."""
    return os.strerror(exc.errno) if exc.errno and exc.errno > 0 else str(exc)


def _reason(exc: DriverError) -> str:
    if isinstance(exc, PrinterSilent):
        return "no answer"
    if isinstance(exc, DeviceUnavailable):
        return "unreachable"
    if isinstance(exc, DeviceProtocolError):
        return "bad answer"
    return "connection lost"
