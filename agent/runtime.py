"""The composition root: builds every part from the config and runs them in one task group.

Start order: outbox, destinations' publishers, status page, command listener, then the devices.
Stop order is the reverse: devices first (no new events), then the listeners and publishers
(the MQTT sink publishes the retained offline state as it leaves), the outbox last (cursors
flushed, database closed). Only this module creates long-lived tasks; each is named
(`driver:dock-in-1`, `plc:filler`, `sync:plant-broker`, `status`, `commands`, `monitor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

from agent import __version__
from agent.alarms import AlarmBoard
from agent.batches import WorkOrder
from agent.clock import clock_synchronised
from agent.commands import CommandListener, WorkOrderCommand
from agent.destinations import DestinationLog, sink_factory, topic_base
from agent.events import EventFactory, utc_now
from agent.history import HistoryError
from agent.line import Line
from agent.reconcile import Reconciler
from agent.retention import Retention
from agent.shifts import ShiftCalendar
from agent.station import ScanStation
from agent.status_view import read_admin_password, status_server
from agent.supervisor import TaskRecord, supervise
from agent.systemd import notify_ready, notify_stopping, ping_watchdog, watchdog_interval
from agent.web.metrics import Metrics
from agent.web.server import StatusServerError
from drivers.base import DeviceHealth, DriverError
from drivers.scanner import SerialScanner
from sync.base import OutboxFull, SyncError
from sync.mqtt_config import MqttDestinationConfig
from sync.outbox import Outbox
from sync.publisher import Publisher

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from agent.config import Config
    from sync.base import Envelope

log = logging.getLogger(__name__)

MONITOR_PERIOD_S = 1.0
DEVICE_ALARM_AFTER_S = 5.0
RECENT_SCANS = 50
# How long a cancelled task may take to end before it is cancelled again (see `stop_tasks`):
# longer than a clean exit takes (an MQTT sink's offline-state publish waits up to its
# publish_timeout, 10 s by default).
RECANCEL_S = 15.0


@dataclass(slots=True)
class RecentScan:
    """A scan as the status page lists it."""

    seq: int
    time: datetime
    source: str
    type: str
    data: dict[str, object]


async def stop_tasks(
    tasks: Sequence[asyncio.Task[None]], *, recancel_s: float = RECANCEL_S
) -> None:
    """Cancel `tasks` and wait until they end, cancelling again any still running after a while.

    Python 3.11's `asyncio.wait_for` (which aiomqtt awaits SUBACKs and PUBACKs with) drops a
    cancellation that arrives just as the awaited operation completes (CPython gh-86296, fixed
    in 3.12): a task that lost its cancellation there would keep the agent from ever stopping.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=recancel_s)
        for task in pending:
            log.warning(
                "task %s still running %g s after its cancellation; cancelling it again",
                task.get_name(),
                recancel_s,
            )


@dataclass
class AgentState:
    """What the agent knows right now, for the status page, /healthz and metrics."""

    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    recent_scans: list[RecentScan] = field(default_factory=list)
    clock_synced: bool | None = None
    version: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def touch(self) -> None:
        """Something the page shows changed: wake every waiter."""
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_changed(self, seen: int) -> int:
        """The version as soon as it differs from `seen`."""
        while self.version == seen:
            await self._changed.wait()
        return self.version


class Agent:
    """One Lineside agent, built from its config."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.config = config
        self.metrics = Metrics()
        self.status_url: str | None = None
        self._password = read_admin_password(config.status.admin_password_file)
        self.alarms = AlarmBoard()
        self.state = AgentState(clock_synced=clock_synchronised())
        self.factory = EventFactory(
            config.agent.site,
            config.agent.node,
            clock,
            clock_synced=lambda: self.state.clock_synced,
        )
        self.health_reasons: list[str] = []
        self.outbox = Outbox(
            config.agent.data_dir / "outbox.db",
            synchronous=config.store.synchronous,
            max_backlog_bytes=config.store.max_backlog_mb * 2**20,
            min_free_bytes=config.store.min_free_mb * 2**20,
            destinations=[d.name for d in config.destinations],
            on_commit=self._committed,
        )
        serial_lock = asyncio.Lock()  # one serial counter per GTIN, shared by every line
        self.lines = [
            Line(
                plc,
                config.line,
                factory=self.factory,
                store=self.outbox,
                alarms=self.alarms,
                timezone=config.agent.timezone,
                shifts=ShiftCalendar(config.shifts, timezone=config.agent.timezone)
                if config.shifts
                else None,
                serial_lock=serial_lock,
            )
            for plc in config.plcs
        ]
        batch_lines = [line for line in self.lines if line.config.batch is not None]
        self.scanners = [SerialScanner(s.id, s) for s in config.scanners]
        self.stations = [
            ScanStation(
                scanner,
                cfg.role,
                factory=self.factory,
                outbox=self.outbox,
                alarms=self.alarms,
                line=batch_lines[0].tracker if batch_lines else None,
                work_order_prefix=config.line.work_order_prefix,
                operator_prefix=config.line.operator_prefix,
                on_event=self._record_scan,
            )
            for scanner, cfg in zip(self.scanners, config.scanners, strict=True)
        ]
        self.publishers = [
            Publisher(
                self.outbox,
                dest.name,
                sink_factory(config, dest, version=__version__),
                routes=frozenset(dest.types),
                on_ack=partial(self.metrics.publish_acknowledged, dest.name),
            )
            for dest in config.destinations
        ]
        mqtt = [d for d in config.destinations if isinstance(d, MqttDestinationConfig)]
        self.commands = (
            CommandListener(
                mqtt[0],
                topic_base(config, mqtt[0]),
                client_id=f"lineside-{config.agent.site}-{config.agent.node}-cmd",
                on_work_order=self._work_order_command,
            )
            if mqtt
            else None
        )
        self.retention = Retention(self.outbox, days=config.store.retention_days)
        self.reconciler = Reconciler(self.outbox, factory=self.factory, alarms=self.alarms)

    # --- what the status page and the commands call ------------------------------------------

    @property
    def devices(self) -> list[DeviceHealth]:
        """Health of every device link."""
        return [s.health for s in self.scanners] + [line.health for line in self.lines]

    def publisher(self, name: str) -> Publisher:
        """The publisher of destination `name`; `ValueError` if there is none."""
        for p in self.publishers:
            if p.name == name:
                return p
        raise ValueError(f"no destination named {name!r}")

    async def set_work_order(self, order: WorkOrder) -> None:
        """Set the work order on every line with batch signals."""
        lines = [line for line in self.lines if line.config.batch is not None]
        if not lines:
            raise ValueError("this agent has no PLC with batch signals")
        for line in lines:
            await line.tracker.set_work_order(order)
        self.state.touch()

    async def _work_order_command(self, command: WorkOrderCommand) -> None:
        await self.set_work_order(
            WorkOrder(
                command.work_order,
                command.gtin or self.config.line.gtin,
                command.lot,
                command.planned_qty,
            )
        )

    def _record_scan(self, envelope: Envelope, data: dict[str, object], source: str) -> None:
        scans = self.state.recent_scans
        if envelope.route == "scan.rejected":
            self.metrics.scan_rejected(source.removeprefix("scanner:"))
        scans.append(
            RecentScan(
                envelope.seq,
                datetime.fromtimestamp(envelope.created, UTC),
                source,
                envelope.route,
                data,
            )
        )
        del scans[:-RECENT_SCANS]
        self.state.touch()

    def _committed(self, seconds: float, routes: Sequence[str]) -> None:
        self.metrics.outbox_committed(seconds)
        for route in routes:
            self.metrics.event_committed(route)

    # --- running ---------------------------------------------------------------------------

    def _task(
        self,
        group: asyncio.TaskGroup,
        name: str,
        run: Callable[[], Awaitable[None]],
        errors: tuple[type[Exception], ...],
    ) -> asyncio.Task[None]:
        record = self.state.tasks.setdefault(name, TaskRecord(name))
        return group.create_task(supervise(record, run, errors), name=name)

    async def run(
        self,
        stop: asyncio.Event,
        *,
        ready: Callable[[], None] | None = None,
    ) -> None:
        """Run until `stop` is set, then shut down in reverse start order."""
        log.info(
            "lineside %s starting: site %s node %s, %d scanner(s), %d PLC(s), %d destination(s)",
            __version__,
            self.config.agent.site,
            self.config.agent.node,
            len(self.scanners),
            len(self.lines),
            len(self.publishers),
        )
        self.config.agent.data_dir.mkdir(parents=True, exist_ok=True)
        async with self.outbox, asyncio.TaskGroup() as outer:
            for line in self.lines:
                if line.config.batch is not None:
                    await line.tracker.restore()
            back: list[asyncio.Task[None]] = [
                self._task(outer, f"sync:{p.name}", p.run, (SyncError,)) for p in self.publishers
            ]
            back.append(outer.create_task(self._monitor(), name="monitor"))
            back.append(self._task(outer, "retention", self.retention.run, (SyncError,)))
            back.append(
                self._task(outer, "reconcile", self.reconciler.run, (SyncError, HistoryError))
            )
            back.append(
                self._task(
                    outer,
                    "status",
                    status_server(self, self._password),
                    (OSError, StatusServerError),
                )
            )
            if self.commands is not None:
                back.append(outer.create_task(self.commands.run(), name="commands"))
            watchdog = watchdog_interval()
            if watchdog is not None:  # systemd's WatchdogSec: ping from this loop at half of it
                back.append(outer.create_task(ping_watchdog(watchdog), name="watchdog"))
            async with asyncio.TaskGroup() as inner:
                front = [
                    self._task(inner, f"driver:{st.scanner.id}", st.run, (DriverError,))
                    for st in self.stations
                ]
                front += [
                    self._task(inner, f"plc:{line.config.id}", line.run, (DriverError,))
                    for line in self.lines
                ]
                if ready is not None:
                    ready()
                notify_ready()  # Type=notify: systemd counts the unit as started from here
                log.info("lineside running")
                await stop.wait()
                log.info("lineside stopping")
                notify_stopping()
                await stop_tasks(front)
            await stop_tasks(back)
        log.info("lineside stopped")

    async def _monitor(self) -> None:
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
            self.state.clock_synced = clock_synchronised()
            self.health_reasons = self.check_health()
            destination_log.sample(p.health for p in self.publishers)
            self.state.touch()
            await asyncio.sleep(MONITOR_PERIOD_S)

    async def _device_status(self, health: DeviceHealth, *, connected: bool) -> None:
        data = {
            "device": health.device,
            "connected": connected,
            "error": None if connected else health.last_error,
        }
        self.metrics.device_changed(health.device, up=connected)
        with contextlib.suppress(OutboxFull):  # the backlog alarm already says why
            await self.outbox.append(self.factory.draft("device.status", "agent", data))

    def check_health(self) -> list[str]:
        """Raise/clear alarms from device, disk and clock state; reasons the agent is unhealthy."""
        reasons: list[str] = []
        for health in self.devices:
            key = f"device:{health.device}"
            if not health.connected and health.down_for() >= DEVICE_ALARM_AFTER_S:
                message = f"{health.device} disconnected: {health.last_error or 'no link'}"
                self.alarms.raise_(key, "device", message)
                reasons.append(message)
            elif health.connected:
                self.alarms.clear(key)
        reasons.extend(
            f"destination {ph.name} not connected: {ph.last_error or 'connecting'}"
            for ph in (p.health for p in self.publishers)
            if not ph.connected
        )
        reasons.extend(
            f"{r.name} restarting: {r.last_error}"
            for r in self.state.tasks.values()
            if not r.running and r.last_error
        )
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(self.config.agent.data_dir).free
            if free < self.config.store.min_free_mb * 2**20 * 2:
                self.alarms.raise_("disk", "disk", f"disk low: {free // 2**20} MB free")
            else:
                self.alarms.clear("disk")
        if self.state.clock_synced is False:
            self.alarms.raise_("clock", "clock", "system clock is not synchronised (NTP)")
        else:
            self.alarms.clear("clock")
        return reasons
