"""The driver contract: readings, device health, and the driver error family.

A driver turns one device into an async stream of typed readings. It is an async context
manager that opens the device and an async iterator of readings; when the link drops it raises
a `DriverError` subclass, and the caller (a supervisor) reconnects with backoff by entering the
driver again. Nothing here knows about `agent/` or `sync/`.

Errors::

    DriverError                  the link to a device failed; reconnect with backoff
     ├── DeviceUnavailable       the device could not be opened or connected
     ├── DeviceDisconnected      an open link went away (unplugged, closed, reset)
     └── DeviceProtocolError     the device answered, but with something unusable
                                 (Modbus exception response, garbage frame, timeout)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, Self

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from types import TracebackType


class DriverError(Exception):
    """The link to a device failed; the caller reconnects with backoff."""


class DeviceUnavailable(DriverError):
    """The device could not be opened or connected."""


class DeviceDisconnected(DriverError):
    """An open link to the device went away."""


class DeviceProtocolError(DriverError):
    """The device answered with something that cannot be used."""


@dataclass(frozen=True, slots=True)
class ScanReading:
    """One framed read from a scanner: the bytes between terminators, as received.

    `error` is set (and `data` holds what was kept) when the frame itself was unusable, e.g.
    longer than the driver's frame limit; interpretation turns such a reading into a rejection.
    """

    source: str
    data: bytes
    time: datetime
    error: str | None = None


@dataclass(slots=True)
class DeviceHealth:
    """What a technician needs to know about one device's link, updated by its driver."""

    device: str
    connected: bool = False
    last_seen: datetime | None = None
    connected_since: datetime | None = None
    disconnected_since: datetime | None = None
    readings: int = 0
    errors: int = 0
    reconnects: int = 0
    last_error: str | None = None
    last_error_time: datetime | None = None
    _last_change: float = field(default_factory=time.monotonic, repr=False)

    def mark_connected(self) -> None:
        """Record that the link is up."""
        now = datetime.now(UTC)
        if not self.connected:
            if self.disconnected_since is not None:
                self.reconnects += 1
            self.connected = True
            self.connected_since = now
            self.disconnected_since = None
            self._last_change = time.monotonic()

    def mark_disconnected(self, error: str | None) -> None:
        """Record that the link is down, with the reason when there is one."""
        now = datetime.now(UTC)
        if error is not None:
            self.record_error(error)
        if self.connected or self.disconnected_since is None:
            self.connected = False
            self.disconnected_since = now
            self._last_change = time.monotonic()

    def mark_seen(self) -> None:
        """Record one reading from the device."""
        self.readings += 1
        self.last_seen = datetime.now(UTC)

    def record_error(self, error: str) -> None:
        """Record an error without changing the connection state."""
        self.errors += 1
        self.last_error = error
        self.last_error_time = datetime.now(UTC)

    def down_for(self) -> float:
        """Seconds the link has been down (0 when it is up)."""
        return 0.0 if self.connected else time.monotonic() - self._last_change


class Scanner(Protocol):
    """A barcode scanner link: `async with scanner:` opens it, `async for` yields readings."""

    @property
    def id(self) -> str:
        """The scanner's configured id."""
        ...

    @property
    def health(self) -> DeviceHealth:
        """The link's health, kept up to date by the driver."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def readings(self) -> AsyncIterator[ScanReading]:
        """The stream of framed reads; raises a `DriverError` when the link drops."""
        ...

    def stream(self) -> AsyncIterator[ScanReading]:
        """Readings for ever: opens the link, and reconnects with backoff when it drops."""
        ...

    async def reply(self, *, accepted: bool) -> None:
        """Answer the last read: good-read (accepted) or NAK (refused), if configured."""
        ...
