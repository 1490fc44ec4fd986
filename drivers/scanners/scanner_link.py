"""What every scanner driver does around its link: reconnect for ever, and frames into readings.

`ScannerLink` is the base of the serial/TCP and the HID scanner drivers. A driver gives how its
link opens and closes (`async with`), `readings()` (framed reads until the link drops, then
`DeviceDisconnected`) and `where()` (what the logs name); the base gives `stream()`, which never
ends by itself: it opens, reads, and on a link failure backs off with full jitter and opens
again, logging once at WARNING when the link goes down and once at INFO when it is back (at
DEBUG in between). It also turns frames into readings, suppressing double reads
(`double_reads`) and keeping `health` up to date. Logs go to the driver's own logger.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Self

from drivers.backoff import full_jitter
from drivers.base import DeviceHealth, DriverError, ScanReading
from drivers.scanners.double_reads import DoubleReadFilter

if TYPE_CHECKING:
    import logging
    from collections.abc import AsyncGenerator, Iterable
    from types import TracebackType

    from drivers.scanners.framing import Frame

BACKOFF_BASE_S = 0.1
LINK_STABLE_S = 1.0  # a re-opened link must hold this long before "link back" is logged


class ScannerLink(ABC):
    """A scanner's link kept open for ever, and its frames made readings (module docstring)."""

    def __init__(
        self,
        id: str,  # noqa: A002 (the config calls it id)
        *,
        dedup_ms: int,
        reconnect_max_s: float,
        log: logging.Logger,
    ) -> None:
        self._id = id
        self._health = DeviceHealth(device=id)
        self._announced = False
        self._doubles = DoubleReadFilter(dedup_ms / 1000)
        self._reconnect_max_s = reconnect_max_s
        self._log = log
        self.suppressed = 0

    @property
    def id(self) -> str:
        """The scanner's configured id."""
        return self._id

    @property
    def health(self) -> DeviceHealth:
        """The link's health, kept up to date by the driver."""
        return self._health

    @abstractmethod
    async def __aenter__(self) -> Self:
        """Open the link."""

    @abstractmethod
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the link."""

    @abstractmethod
    def readings(self) -> AsyncGenerator[ScanReading, None]:
        """Framed reads until the link drops (then `DeviceDisconnected`)."""

    @abstractmethod
    def where(self) -> object:
        """What the logs name as the link (a port, a URL, an input device)."""

    async def stream(self) -> AsyncGenerator[ScanReading, None]:
        """Yield readings for ever: open, read, and on a link failure back off and reconnect.

        Consume it with `contextlib.aclosing` so the link is let go promptly.
        """
        cap = self._reconnect_max_s
        attempt = 0
        down = False
        loop = asyncio.get_running_loop()
        while True:
            up_at: float | None = None
            seen_before = self._health.readings
            back: asyncio.TimerHandle | None = None
            try:
                async with self:
                    up_at = time.monotonic()
                    if down:
                        self._announced = False
                        # Announced only once the link has held for a moment: a link that opens
                        # and drops at once on every retry is one outage, not a flapping log.
                        back = loop.call_later(LINK_STABLE_S, self._log_back)
                    else:
                        self._log.info("scanner %s: connected on %s", self._id, self.where())
                    down = False
                    async for reading in self.readings():
                        if back is not None and not self._announced:
                            back.cancel()
                            self._log_back()  # it carries reads: it is back
                        yield reading
            except DriverError as exc:
                quick = back is not None and not self._announced
                if back is not None:
                    back.cancel()
                if down or quick:
                    self._log.debug("scanner %s: still down: %s", self._id, exc)
                else:
                    self._log.warning("scanner %s: link down: %s", self._id, exc)
                down = True
            # A link that carried reads or stayed up a while starts the backoff afresh; one
            # that fails right after opening keeps backing off.
            if up_at is not None and (
                self._health.readings > seen_before or time.monotonic() - up_at >= cap
            ):
                attempt = 0
            delay = full_jitter(attempt, base_s=BACKOFF_BASE_S, cap_s=cap)
            attempt += 1
            self._log.debug("scanner %s: retrying in %.2f s", self._id, delay)
            await asyncio.sleep(delay)

    def _log_back(self) -> None:
        self._announced = True
        self._log.info("scanner %s: link back on %s", self._id, self.where())

    def _readings_of(self, frames: Iterable[Frame | None]) -> list[ScanReading]:
        """Turn frames into readings, updating health; suppressed doubles are left out."""
        readings = []
        for frame in frames:
            reading = None if frame is None else self._reading(frame)
            if reading is not None:
                readings.append(reading)
        return readings

    def _reading(self, frame: Frame) -> ScanReading | None:
        """Turn a frame into a reading, updating health; None when it is a suppressed double."""
        if frame.error is None:
            if self._doubles.is_double(frame.data):
                self.suppressed += 1
                self._health.last_seen = datetime.now(UTC)
                self._log.debug("scanner %s: suppressed double read %r", self._id, frame.data)
                return None
            self._log.debug("scanner %s: read %r", self._id, frame.data)
        else:
            self._health.record_error(frame.error)
            self._log.debug("scanner %s: %s: %r", self._id, frame.error, frame.data)
        self._health.mark_seen()
        return ScanReading(
            source=self._id, data=frame.data, time=datetime.now(UTC), error=frame.error
        )
