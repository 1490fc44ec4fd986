"""One PLC and what its signals mean: the Modbus link feeding the batch tracker.

Each complete poll of the PLC goes to the tracker; writes (code write-back, handshake ack) go
back over the same link, serialized by the driver. A PLC without `[plcs.batch]` is only
watched (health, parameters on the status page).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from agent.batches import BatchTracker
from drivers.base import DriverError
from drivers.modbus import ModbusPlc

if TYPE_CHECKING:
    import asyncio

    from agent.alarms import AlarmBoard
    from agent.batches import BatchStore
    from agent.config import LineSection, PlcRtuConfig, PlcTcpConfig
    from agent.events import EventFactory
    from agent.shifts import ShiftCalendar
    from drivers.base import DeviceHealth

log = logging.getLogger(__name__)


class Line:
    """A PLC link and its batch tracker."""

    def __init__(
        self,
        config: PlcTcpConfig | PlcRtuConfig,
        line: LineSection,
        *,
        factory: EventFactory,
        store: BatchStore,
        alarms: AlarmBoard,
        timezone: str | None,
        shifts: ShiftCalendar | None = None,
        serial_lock: asyncio.Lock | None = None,
    ) -> None:
        self.config = config
        self.tracker = BatchTracker(
            config,
            line,
            factory=factory,
            store=store,
            alarms=alarms,
            timezone=timezone,
            shifts=shifts,
            serial_lock=serial_lock,
        )
        watch = self.tracker.watch if config.batch is not None else dict(config.params)
        self.plc = ModbusPlc(config.id, config, watch=watch)
        self.last_values: dict[str, object] = {}

    @property
    def health(self) -> DeviceHealth:
        """The PLC link's health."""
        return self.plc.health

    @property
    def mode(self) -> str:
        """How batches are signalled (`handshake`, `counter`, `edge`), or `watch`."""
        return self.tracker.mode if self.config.batch is not None else "watch"

    async def run(self) -> None:
        """Poll for ever (the driver reconnects by itself) and feed the tracker."""
        async with self.plc:
            async for snapshot in self.plc.snapshots():
                self.last_values = dict(snapshot.values)
                if self.config.batch is not None:
                    try:
                        await self.tracker.on_poll(
                            snapshot.values, self.plc, fresh_link=snapshot.after_reconnect
                        )
                    except DriverError as exc:
                        # A write (trace code, ack) failed. The batch state is committed, so
                        # the next poll carries on from it and the driver reconnects by itself;
                        # left to the supervisor, link trouble grew its backoff to 30 s.
                        self.plc.health.record_error(str(exc))
                        log.warning(
                            "PLC %s: write failed, retried from the next poll: %s",
                            self.config.id,
                            exc,
                        )
