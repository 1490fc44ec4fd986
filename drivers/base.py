"""The driver contract: readings, device health, and the driver error family.

A driver turns one device into an async stream of typed readings. It is an async context
manager that opens the device and an async iterator of readings; when the link drops it raises
a `DriverError` subclass, and the caller (a supervisor) reconnects with backoff by entering the
driver again. Nothing here knows about `agent/` or `sync/`.

Two kinds of device have a contract here: `Scanner` (framed reads) and `Plc` (snapshots of
named values, whatever the protocol: Modbus, OPC UA, S7, EtherNet/IP). What a PLC address means
to its user is protocol-neutral: `AddressInfo` says whether it holds a bool, an integer, a float
or a string, how wide, and whether it can be written. Addresses whose type is in the address
text (Modbus, S7) know it before connecting (`PlcAddress.info`); the others (OPC UA nodes,
Logix tags) learn it from the PLC (`Plc.describe`).

Errors::

    DriverError                  the link to a device failed; reconnect with backoff
     ├── DeviceUnavailable       the device could not be opened or connected
     │    └── DeviceRefused      it was reached but refused us: security policy, certificate,
     │                           credentials, access rights (retrying will not fix that)
     ├── DeviceDisconnected      an open link went away (unplugged, closed, reset)
     └── DeviceProtocolError     the device answered, but with something unusable
          │                      (Modbus exception response, garbage frame, timeout)
          └── AddressRejected    the device says an address does not exist, has a type that
                                 cannot be used, or may not be accessed (names the address)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, Self, TypeVar

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping
    from types import TracebackType

Value = bool | int | float | str
"""A value read from or written to a PLC."""


class DriverError(Exception):
    """The link to a device failed; the caller reconnects with backoff."""


class DeviceUnavailable(DriverError):
    """The device could not be opened or connected."""


class DeviceDisconnected(DriverError):
    """An open link to the device went away."""


class DeviceProtocolError(DriverError):
    """The device answered with something that cannot be used."""


class DeviceRefused(DeviceUnavailable):
    """The device was reached but refused the connection (security, credentials, rights)."""


class AddressRejected(DeviceProtocolError):
    """The device refused one address: it does not exist, has an unusable type, or is locked.

    `address` is the address as configured, so the caller can point at the config key.
    """

    def __init__(self, message: str, *, address: str) -> None:
        super().__init__(message)
        self.address = address


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


# --- PLCs ---------------------------------------------------------------------------------


class ValueKind(StrEnum):
    """What a PLC address holds, whatever the protocol calls it."""

    BOOL = "bool"
    INTEGER = "integer"
    FLOAT = "float"
    STRING = "string"


@dataclass(frozen=True, slots=True)
class AddressInfo:
    """What one PLC address holds and whether the agent may write it.

    `bits` and `signed` describe integers (a uint16 counter wraps at 65536); `length` is the
    most characters a string holds (None: the PLC takes any length, as an OPC UA String).
    `type_name` is the PLC's own name for the type, for messages (`DINT`, `UInt32`, `int16`).
    """

    kind: ValueKind
    writable: bool
    type_name: str
    bits: int | None = None
    signed: bool = False
    length: int | None = None

    def __post_init__(self) -> None:
        if (self.kind is ValueKind.INTEGER) != (self.bits is not None):
            msg = "bits is given for integers, and only for them"
            raise ValueError(msg)
        if self.length is not None and self.kind is not ValueKind.STRING:
            msg = "length is given for strings only"
            raise ValueError(msg)

    def wraps(self, last: int, value: int) -> bool:
        """Whether `last` → `value` is one step of an unsigned counter rolling over."""
        if self.kind is not ValueKind.INTEGER or self.signed or self.bits is None:
            return False
        return (value - last) % (1 << self.bits) == 1 and value < last


class PlcAddress(Protocol):
    """One address in a PLC, in its protocol's syntax; `str()` gives the configured text."""

    @property
    def info(self) -> AddressInfo | None:
        """What the address holds, when the address text says it (else ask `Plc.describe`)."""
        ...


@dataclass(frozen=True, slots=True)
class PlcSnapshot:
    """All watched values of one PLC, read in one poll.

    `after_reconnect` is set on the first snapshot after the link was lost and re-established:
    the consumer may have missed changes in between (e.g. an edge on a trigger coil).
    """

    time: datetime
    values: dict[str, Value]
    poll_no: int
    after_reconnect: bool = False


AddressT_contra = TypeVar("AddressT_contra", contravariant=True)


class Plc(Protocol[AddressT_contra]):
    """A PLC link of any protocol: `async with plc:` connects, `snapshots()` streams its values.

    The driver is built with the named addresses it watches (`watch`); every snapshot holds all
    of them, read in one request where the protocol allows (see each driver for its limits).
    Writes go one value at a time over the same link, serialized with the reads.
    """

    @property
    def id(self) -> str:
        """The PLC's configured id."""
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

    def snapshots(self) -> AsyncIterator[PlcSnapshot]:
        """Complete snapshots every poll period, for ever; reconnects by itself with backoff."""
        ...

    async def poll(self) -> PlcSnapshot:
        """Read every watched value once (connected)."""
        ...

    async def read(self, addresses: Mapping[str, AddressT_contra]) -> dict[str, Value]:
        """Read the named addresses once (connected); all or nothing."""
        ...

    async def write(self, address: AddressT_contra, value: Value) -> None:
        """Write one value (connected)."""
        ...

    async def describe(self, address: AddressT_contra) -> AddressInfo:
        """What the address holds and whether it is writable, asking the PLC when needed."""
        ...
