"""The poll loop every PLC driver shares: connect, read all watched values, back off, repeat.

`PollingPlc` implements the protocol-neutral half of `drivers.base.Plc`: the async context
manager, `poll()` and `snapshots()` with its reconnect policy. A driver subclass supplies how to
open and close its link (`_open`, `_shut`), how to read the watched values in one request
(`_read_watched`) and where it is (`_where`, for logs).

The stream's rules, the same for every protocol:

- A failed poll never yields anything: the link is closed, the error recorded in `health`, and
  it is opened again after a full-jitter backoff (`drivers.backoff`).
- The first snapshot after a lost link carries `after_reconnect=True` (changes may have been
  missed, e.g. an edge on a trigger); the first snapshot ever does not.
- Polls follow the clock: a slow poll or consumer skips the missed ticks, it does not catch up.
- The PLC going down is logged once at WARNING and coming back once at INFO.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Generic, Self, TypeVar

from drivers.backoff import Backoff
from drivers.base import DeviceHealth, DriverError, PlcSnapshot, Value

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping
    from types import TracebackType

log = logging.getLogger(__name__)

AddressT = TypeVar("AddressT")


class PollingPlc(ABC, Generic[AddressT]):
    """A PLC link polled for a fixed set of named addresses; subclasses own the protocol."""

    def __init__(
        self,
        id: str,  # noqa: A002 (the config calls it id)
        *,
        watch: Mapping[str, AddressT] | None,
        poll_ms: int,
        backoff_base_s: float,
        backoff_cap_s: float,
    ) -> None:
        self._id = id
        self.watch: dict[str, AddressT] = dict(watch or {})
        self.health = DeviceHealth(device=id)
        self._poll_s = poll_ms / 1000
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._entered = False
        self._poll_no = 0

    @property
    def id(self) -> str:
        """The PLC's configured id."""
        return self._id

    @property
    @abstractmethod
    def connected(self) -> bool:
        """Whether the link is open right now."""

    @abstractmethod
    def _where(self) -> str:
        """Where the PLC is, for messages (`10.0.0.20:502 unit 1`)."""

    @abstractmethod
    async def _open(self) -> None:
        """Open the link; raise a `DriverError` (and record it in `health`) when it cannot."""

    @abstractmethod
    async def _shut(self) -> None:
        """Close the link if it is open; never raises."""

    @abstractmethod
    async def _read_watched(self) -> dict[str, Value]:
        """Read every watched value, in one request where the protocol allows."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._id!r}, {self._where()})"

    async def __aenter__(self) -> Self:
        await self._open()
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._entered = False
        await self._shut()

    async def poll(self) -> PlcSnapshot:
        """Read every watched value once."""
        return await self._poll(after_reconnect=False)

    async def _poll(self, *, after_reconnect: bool) -> PlcSnapshot:
        values = await self._read_watched()
        self._poll_no += 1
        self.health.mark_seen()
        return PlcSnapshot(
            time=datetime.now(UTC),
            values=values,
            poll_no=self._poll_no,
            after_reconnect=after_reconnect,
        )

    async def snapshots(self) -> AsyncIterator[PlcSnapshot]:
        """Complete, fresh snapshots every poll period, for ever; reconnects by itself.

        Only cancellation ends the stream. Used outside `async with`, it opens the link itself
        and closes it when the stream ends.
        """
        loop = asyncio.get_running_loop()
        backoff = Backoff(self._backoff_base_s, self._backoff_cap_s)
        down = False
        lost = False
        try:
            while True:
                try:
                    if not self.connected:
                        await self._open()
                    next_tick = loop.time()
                    while True:
                        snapshot = await self._poll(after_reconnect=lost)
                        if down:
                            log.info("PLC %s is back (%s)", self._id, self._where())
                            down = False
                        lost = False
                        backoff.reset()
                        yield snapshot
                        next_tick += self._poll_s
                        now = loop.time()
                        if next_tick < now:  # a slow poll or consumer: skip the missed ticks
                            next_tick += self._poll_s * ((now - next_tick) // self._poll_s + 1)
                        await asyncio.sleep(next_tick - now)
                except DriverError as exc:
                    await self._shut()
                    self.health.mark_disconnected(str(exc))
                    if not down:
                        log.warning("PLC %s is down: %s", self._id, exc)
                        down = True
                    else:
                        log.debug("PLC %s still down: %s", self._id, exc)
                    lost = self._poll_no > 0  # the consumer may have missed changes
                    await asyncio.sleep(backoff.next_delay())
        finally:
            if not self._entered:
                await self._shut()
                self.health.mark_disconnected(None)
