"""The monitor (the runtime task `monitor`): device links, disk, clock and outbox, once a second.

A device link that goes down or comes back is a `device.status` event and a metric; a link
down for `DEVICE_ALARM_AFTER_S`, a disk with less than twice `store.min_free_mb` free, a clock
not synchronised (NTP) and an outbox fault are alarms on the status page; each finding that
makes the agent unhealthy is a reason /healthz gives (`health_reasons`, with the tasks waiting
to restart). Destinations' figures go to the log on a change and once a minute
(`DestinationLog`).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from typing import TYPE_CHECKING, Protocol

from agent.runtime.clock import clock_synchronised
from agent.runtime.destinations import DestinationLog
from sync.base import OutboxFull

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from agent.alarms import AlarmBoard
    from agent.events import EventFactory
    from agent.runtime.state import AgentState
    from agent.web.metrics import Metrics
    from drivers.base import DeviceHealth
    from sync.outbox import Outbox
    from sync.publisher import Publisher

MONITOR_PERIOD_S = 1.0
DEVICE_ALARM_AFTER_S = 5.0


class Linked(Protocol):
    """A part with a device link: a scanner, a PLC's line."""

    @property
    def health(self) -> DeviceHealth:
        """The link's health."""
        ...


class Monitor:
    """Turns the health of the agent's parts into alarms, events and /healthz reasons."""

    def __init__(
        self,
        *,
        devices: Sequence[Linked],
        publishers: Sequence[Publisher],
        outbox: Outbox,
        factory: EventFactory,
        alarms: AlarmBoard,
        metrics: Metrics,
        state: AgentState,
        data_dir: Path,
        min_free_bytes: int,
    ) -> None:
        self._devices = devices
        self._publishers = publishers
        self._outbox = outbox
        self._factory = factory
        self._alarms = alarms
        self._metrics = metrics
        self._state = state
        self._data_dir = data_dir
        self._min_free_bytes = min_free_bytes
        self.reasons: list[str] = []
        """The last findings that make the agent unhealthy."""

    @property
    def health_reasons(self) -> list[str]:
        """Why the agent is unhealthy: the monitor's last findings, and tasks restarting now.

        Tasks are read live, so a failed monitor shows too.
        """
        return self.reasons + [
            f"{r.name} restarting: {r.last_error}"
            for r in self._state.tasks.values()
            if not r.running and r.last_error
        ]

    @property
    def devices(self) -> list[DeviceHealth]:
        """Health of every device link."""
        return [d.health for d in self._devices]

    async def run(self) -> None:
        """Sample health once a second: alarms, device.status events, change notifications.

        Destinations' figures go to the log on a change and once a minute (`DestinationLog`).
        """
        seen: dict[str, tuple[bool, int]] = {}
        destination_log = DestinationLog()
        while True:
            for health in self.devices:
                now = (health.connected, health.reconnects)
                before = seen.get(health.device, (False, 0))
                seen[health.device] = now
                if now == before:
                    continue
                if (before[0] and not now[0]) or now[1] > before[1]:
                    await self._device_status(health, connected=False)  # went down (maybe briefly)
                if now[0]:
                    await self._device_status(health, connected=True)
            self._state.clock_synced = clock_synchronised()
            self.reasons = self.check_health()
            destination_log.sample(p.health for p in self._publishers)
            self._state.touch()
            await asyncio.sleep(MONITOR_PERIOD_S)

    async def _device_status(self, health: DeviceHealth, *, connected: bool) -> None:
        data = {
            "device": health.device,
            "connected": connected,
            "error": None if connected else health.last_error,
        }
        self._metrics.device_changed(health.device, up=connected)
        with contextlib.suppress(OutboxFull):  # the backlog alarm already says why
            await self._outbox.append(self._factory.draft("device.status", "agent", data))

    def check_health(self) -> list[str]:
        """Raise/clear alarms from device, disk and clock state; reasons the agent is unhealthy.

        Tasks waiting to restart are not among them: `health_reasons` adds them, live.
        """
        reasons: list[str] = []
        for health in self.devices:
            key = f"device:{health.device}"
            if not health.connected and health.down_for() >= DEVICE_ALARM_AFTER_S:
                error = health.last_error or "no link"
                message = f"{health.device} disconnected: {error}"
                self._alarms.raise_(
                    key,
                    "device",
                    message,
                    code="device.disconnected",
                    params={"device": health.device, "error": error},
                )
                reasons.append(message)
            elif health.connected:
                self._alarms.clear(key)
        reasons.extend(
            f"destination {ph.name} not connected: {ph.last_error or 'connecting'}"
            for ph in (p.health for p in self._publishers)
            if not ph.connected
        )
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(self._data_dir).free
            if free < self._min_free_bytes * 2:
                self._alarms.raise_(
                    "disk",
                    "disk",
                    f"disk low: {free // 2**20} MB free",
                    code="disk.low",
                    params={"free_mb": free // 2**20},
                )
            else:
                self._alarms.clear("disk")
        if self._state.clock_synced is False:
            self._alarms.raise_(
                "clock", "clock", "system clock is not synchronised (NTP)", code="clock.not_synced"
            )
        else:
            self._alarms.clear("clock")
        reasons.extend(self._outbox_alarms())
        return reasons

    def _outbox_alarms(self) -> list[str]:
        """The outbox's database fault (an alarm, and unhealthy) and a deliberate new start."""
        if self._outbox.started_anew is not None:
            self._alarms.raise_(
                "outbox-new",
                "outbox",
                self._outbox.started_anew,
                code="outbox.new_sequence",
                params={"detail": self._outbox.started_anew},
            )
        fault = self._outbox.fault
        if fault is None:
            self._alarms.clear("outbox")
            return []
        self._alarms.raise_(
            "outbox", "outbox", fault, code="outbox.fault", params={"detail": fault}
        )
        return [fault]
