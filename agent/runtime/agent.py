"""The composition root: builds every part from the config and runs them in one task group.

Start order: outbox, destinations' publishers, status page, command listener, then the devices.
Stop order is the reverse: devices first (no new events), then the listeners and publishers
(the MQTT sink publishes the retained offline state as it leaves), the outbox last (cursors
flushed, database closed). Only this module creates long-lived tasks; each is named
(`driver:dock-in-1`, `plc:filler`, `sync:plant-broker`, `printer:labeller-1`, `status`,
`status-feed`, `commands`, `monitor`, `health`, `retention`, `reconcile`, `watchdog`) and
supervised (`agent.runtime.supervisor`): restarted on any error, which /healthz and the status
page show while it waits to restart. What the page shows is `agent.runtime.status`'s, what the
monitor finds `agent.runtime.monitor`'s.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from agent import __version__
from agent.alarms import AlarmBoard
from agent.batches.line import Line
from agent.batches.lines import Lines
from agent.batches.shifts import ShiftCalendar
from agent.config.root import outbox_path
from agent.config.scanners import HidScannerConfig, SerialScannerConfig, StationRole
from agent.config.status import read_admin_password
from agent.events import EventFactory, utc_now
from agent.history.reader import HistoryError
from agent.history.reconcile import Reconciler
from agent.history.retention import Retention
from agent.packing.contents import OpenPallets
from agent.packing.station import PackingStation
from agent.printing.printers import PRINTER_ERRORS, build_printers
from agent.runtime.clock import clock_synchronised
from agent.runtime.commands import CommandListener
from agent.runtime.destinations import node_topics, sink_factory
from agent.runtime.health import HealthPublisher, state_payload
from agent.runtime.monitor import Monitor
from agent.runtime.state import AgentState
from agent.runtime.status import RuntimeView, StatusParts
from agent.runtime.supervisor import TaskRecord, stop_tasks, supervise
from agent.runtime.systemd import notify_ready, notify_stopping, ping_watchdog, watchdog_interval
from agent.scanning.interpret import Rejected, StationRules
from agent.scanning.station import ScanStation
from agent.web.app import create_app
from agent.web.audit import AuditLog
from agent.web.hosts import HostPolicy
from agent.web.metrics import Metrics
from agent.web.server import StatusServer, StatusServerError
from drivers.base import DriverError
from drivers.scanners.hid import HidScanner
from drivers.scanners.serial import SerialScanner
from sync.base import SyncError
from sync.mqtt_state import RetainedState
from sync.outbox import Outbox
from sync.publisher import Publisher

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from datetime import datetime

    from agent.batches.work_orders import WorkOrder, WorkOrderCommand
    from agent.config import Config
    from agent.config.scanners import ScannerConfig
    from agent.scanning.interpret import Scanned
    from drivers.base import Scanner, ScanReading

log = logging.getLogger(__name__)


class Agent:
    """One Lineside agent, built from its config."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], datetime] = utc_now,
        new_outbox: bool = False,
    ) -> None:
        """`new_outbox`: start anew where the recorded outbox is gone (`run --new-outbox`)."""
        self.config = config
        self.metrics = Metrics()
        self.status_url: str | None = None
        self._password = read_admin_password(config.status.admin_password_file)
        self.audit = AuditLog(
            config.agent.data_dir / "audit.log",
            max_bytes=config.status.audit_max_mb * 2**20,
            keep=config.status.audit_files,
        )
        self.alarms = AlarmBoard()
        self.state = AgentState(clock_synced=clock_synchronised())
        self.factory = EventFactory(
            config.agent.site,
            config.agent.node,
            clock,
            clock_synced=lambda: self.state.clock_synced,
        )
        self.outbox = Outbox(
            outbox_path(config.agent.data_dir),
            synchronous=config.store.synchronous,
            max_backlog_bytes=config.store.max_backlog_mb * 2**20,
            min_free_bytes=config.store.min_free_mb * 2**20,
            destinations=[d.name for d in config.destinations],
            on_commit=self._committed,
            labels={"site": config.agent.site, "node": config.agent.node},
            new_sequence=new_outbox,
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
        self.batch_lines = Lines([line.tracker for line in self.lines if line.tracker])
        self.printers = build_printers(
            config,
            store=self.outbox,
            factory=self.factory,
            alarms=self.alarms,
            on_change=self.state.touch,
        )
        self.scanners = [_scanner(s) for s in config.scanners]
        self.stations = [
            self._station(scanner, cfg)
            for scanner, cfg in zip(self.scanners, config.scanners, strict=True)
            if cfg.role is not StationRole.PACKING
        ]
        self.pallets = OpenPallets(self.outbox)
        self.packing = [
            self._packing_station(scanner, cfg)
            for scanner, cfg in zip(self.scanners, config.scanners, strict=True)
            if cfg.role is StationRole.PACKING
        ]
        self.retained_state = RetainedState(state_payload(online=True, version=__version__))
        self.publishers = [
            Publisher(
                self.outbox,
                dest.name,
                sink_factory(config, dest, version=__version__, state=self.retained_state),
                routes=frozenset(dest.types),
                on_ack=partial(self.metrics.publish_acknowledged, dest.name),
            )
            for dest in config.destinations
        ]
        command_broker = config.command_broker
        self.commands = (
            CommandListener(
                command_broker,
                node_topics(config, command_broker),
                client_id=f"lineside-{config.agent.site}-{config.agent.node}-cmd",
                on_work_order=self._work_order_command,
                audit=self.audit,
            )
            if command_broker is not None
            else None
        )
        self.retention = Retention(self.outbox, days=config.store.retention_days)
        self.reconciler = Reconciler(self.outbox, factory=self.factory, alarms=self.alarms)
        self.monitor = Monitor(
            devices=[*self.scanners, *self.lines, *self.printers],
            publishers=self.publishers,
            outbox=self.outbox,
            factory=self.factory,
            alarms=self.alarms,
            metrics=self.metrics,
            state=self.state,
            data_dir=config.agent.data_dir,
            min_free_bytes=config.store.min_free_mb * 2**20,
        )
        self.health = HealthPublisher(
            self.retained_state,
            version=__version__,
            devices=lambda: self.monitor.devices,
            publishers=self.publishers,
            alarms=self.alarms,
            outbox=self.outbox,
        )
        self.view = RuntimeView(self._status_parts())

    def _station(self, scanner: Scanner, cfg: ScannerConfig) -> ScanStation:
        """A scanner's station: what its reads mean there, and the line its materials feed."""
        line = self.config.line_of(cfg)
        rules = StationRules(
            cfg.role,
            line=line,
            work_order_prefix=self.config.line.work_order_prefix,
            operator_prefix=self.config.line.operator_prefix,
        )
        return ScanStation(
            scanner,
            rules,
            factory=self.factory,
            outbox=self.outbox,
            alarms=self.alarms,
            line=None if line is None else self.batch_lines.named(line),
            on_scan=self._record_scan,
        )

    def _packing_station(self, scanner: Scanner, cfg: ScannerConfig) -> PackingStation:
        """A packing scanner's station, printing on its printer (if it names one)."""
        printer = next((p for p in self.printers if p.id == cfg.printer), None)
        return PackingStation(
            scanner,
            factory=self.factory,
            store=self.outbox,
            alarms=self.alarms,
            pallets=self.pallets,
            packing=self.config.packing,
            printer=printer,
            on_scan=self._record_scan,
        )

    def _status_parts(self) -> StatusParts:
        """What the status page reads and acts on, named part by part."""
        return StatusParts(
            site=self.config.agent.site,
            node=self.config.agent.node,
            state=self.state,
            scanners=[*self.stations, *self.packing],
            plcs=self.lines,
            lines=self.batch_lines,
            publishers=self.publishers,
            destination_kinds={d.name: d.kind for d in self.config.destinations},
            alarms=self.alarms,
            health_reasons=lambda: self.monitor.health_reasons,
            outbox=self.outbox,
            history=outbox_path(self.config.agent.data_dir),
            printers=self.printers,
        )

    # --- what the commands call ---------------------------------------------------------------

    async def set_work_order(self, order: WorkOrder, line: str | None = None) -> None:
        """Run `order` on `line` (None: the node's only line)."""
        await self.batch_lines.named(line).set_work_order(order)
        self.state.touch()

    async def _work_order_command(self, command: WorkOrderCommand) -> None:
        await self.batch_lines.set_work_order(command)
        self.state.touch()

    def _record_scan(self, reading: ScanReading, meaning: Scanned) -> None:
        if type(meaning) is Rejected:
            self.metrics.scan_rejected(reading.source)
        self.state.recent_scans.append((reading, meaning))
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
        """Start `run` as the supervised task `name`; `errors` is its family of expected errors."""
        record = self.state.tasks.setdefault(name, TaskRecord(name))
        return group.create_task(
            supervise(record, run, errors, on_change=self.state.touch), name=name
        )

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
            for tracker in self.batch_lines:
                await tracker.restore()
            for packing in self.packing:
                packing.restore()
            back: list[asyncio.Task[None]] = [
                self._task(outer, f"sync:{p.name}", p.run, (SyncError,)) for p in self.publishers
            ]
            back.append(self._task(outer, "monitor", self.monitor.run, ()))
            back.append(self._task(outer, "health", self.health.run, ()))
            back += [
                self._task(outer, f"printer:{p.id}", p.run, PRINTER_ERRORS) for p in self.printers
            ]
            back.append(self._task(outer, "retention", self.retention.run, (SyncError,)))
            back.append(
                self._task(outer, "reconcile", self.reconciler.run, (SyncError, HistoryError))
            )
            status = self._status_page()
            back.append(self._task(outer, "status", status.serve, (OSError, StatusServerError)))
            back.append(self._task(outer, "status-feed", status.feed, ()))
            if self.commands is not None:
                back.append(self._task(outer, "commands", self.commands.run, ()))
            watchdog = watchdog_interval()
            if watchdog is not None:  # systemd's WatchdogSec: ping from this loop at half of it
                back.append(self._task(outer, "watchdog", partial(ping_watchdog, watchdog), ()))
            async with asyncio.TaskGroup() as inner:
                front = [
                    self._task(inner, f"driver:{st.scanner.id}", st.run, (DriverError,))
                    for st in self.stations
                ]
                front += [
                    self._task(inner, f"driver:{st.scanner.id}", st.run, (DriverError,))
                    for st in self.packing
                ]
                front += [
                    self._task(inner, f"plc:{line.config.id}", line.run, (DriverError,))
                    for line in self.lines
                ]
                if ready is not None:
                    ready()
                notify_ready()  # Type=notify: systemd counts the unit as started from here
                # what start-up built lives as long as the process: the collector skips it
                gc.freeze()
                log.info("lineside running")
                await stop.wait()
                log.info("lineside stopping")
                notify_stopping()
                await stop_tasks(front)
            await stop_tasks(back)
        self.audit.flush()
        log.info("lineside stopped")

    def _status_page(self) -> StatusTasks:
        """The page served on `[status] listen`, within the bounds of `[status]`."""
        cfg = self.config.status
        app = create_app(
            self.view,
            metrics=self.metrics,
            password=self._password,
            audit=self.audit,
            version=__version__,
            hosts=HostPolicy.default(cfg.host, cfg.allowed_hosts),
            max_streams=cfg.max_streams,
        )

        async def serve() -> None:
            async with StatusServer(
                app, host=cfg.host, port=cfg.port, max_connections=cfg.max_connections
            ) as server:
                self.status_url = server.url
                await server.serve_forever()

        return StatusTasks(serve=serve, feed=app.state.feed.run)


@dataclass(frozen=True, slots=True)
class StatusTasks:
    """The status page's two long-lived tasks, for the runtime to run supervised."""

    serve: Callable[[], Awaitable[None]]  # `status`: uvicorn on `[status] listen`
    feed: Callable[[], Awaitable[None]]  # `status-feed`: one snapshot per tick for live streams


def _scanner(config: ScannerConfig) -> HidScanner | SerialScanner:
    """The driver of one configured scanner: a keyboard-wedge (HID) one, or serial/TCP."""
    match config:
        case HidScannerConfig():
            return HidScanner(config.id, config)
        case SerialScannerConfig():
            return SerialScanner(config.id, config)
