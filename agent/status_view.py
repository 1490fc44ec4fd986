"""The running agent as the status page sees it: the `StatusView` of `agent.web.view`.

Snapshots are built from what the parts already keep (driver health, publisher health, the
batch tracker, the alarm board); nothing here reads a device or the disk on the request path
except the events and quarantine queries, which go to the outbox's reader connection.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr, ValidationError

from agent import __version__
from agent.batches import WorkOrder
from agent.commands import WorkOrderCommand
from agent.config import ConfigError
from agent.history import HistoryReader, outbox_path
from agent.tracing import trace
from agent.web.app import create_app
from agent.web.server import StatusServer
from agent.web.view import (
    AgentInfo,
    AgentStatus,
    BatchStatus,
    CompletedBatch,
    DestinationStatus,
    DeviceStatus,
    Health,
    QuarantinedEvent,
    RecentScan,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from agent.runtime import Agent


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


class RuntimeView:
    """Implements `agent.web.view.StatusView` over a running `Agent`."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._started_mono = time.monotonic()

    def status(self) -> AgentStatus:
        """A snapshot of everything the page shows."""
        agent = self._agent
        cfg = agent.config
        devices = [
            DeviceStatus(
                id=h.device,
                kind="scanner",
                role=str(role),
                connected=h.connected,
                last_seen=h.last_seen,
                errors=h.errors,
                last_error=h.last_error,
                disconnected_since=h.disconnected_since,
            )
            for h, role in zip(
                (s.health for s in agent.scanners), (s.role for s in cfg.scanners), strict=True
            )
        ]
        devices += [
            DeviceStatus(
                id=p.health.device,
                kind="plc",
                role=p.mode,
                connected=p.health.connected,
                last_seen=p.health.last_seen,
                errors=p.health.errors,
                last_error=p.health.last_error,
                disconnected_since=p.health.disconnected_since,
                values=_plc_values(p.last_values),
            )
            for p in agent.lines
        ]
        kinds = {d.name: d.kind for d in cfg.destinations}
        destinations = [
            DestinationStatus(
                name=h.name,
                kind=kinds.get(h.name, "?"),
                connected=h.connected,
                delivered=h.delivered,
                backlog=h.backlog,
                backlog_bytes=h.backlog_bytes,
                oldest_undelivered_age_s=h.oldest_undelivered_age_s,
                quarantined=h.quarantined,
                last_error=h.last_error,
            )
            for h in (p.health for p in agent.publishers)
        ]
        batch = None
        recent_batches: list[CompletedBatch] = []
        if agent.lines:
            tracker = agent.lines[0].tracker
            if tracker.open is not None and tracker.open.gtin:
                open_ = tracker.open
                batch = BatchStatus(
                    work_order=open_.work_order,
                    gtin=open_.gtin or "",
                    lot=open_.lot,
                    started=_parse_time(open_.started),
                    materials=len(open_.materials),
                    planned_qty=tracker.work_order.planned_qty,
                )
            recent_batches = [
                CompletedBatch(
                    trace_code=str(b["trace_code"]),
                    lot=str(b["lot"]),
                    quantity=b["quantity"],
                    completed=_parse_time(str(b["completed"])),
                )
                for line in agent.lines
                for b in line.tracker.recent
            ]
        scans = [
            RecentScan(
                time=s.time,
                device=s.source.removeprefix("scanner:"),
                type=s.type,
                raw=str(s.data.get("raw", "")),
                gtin=_text(s.data.get("gtin")),
                lot=_text(s.data.get("lot")),
                reason=_text(s.data.get("reason")),
            )
            for s in reversed(agent.state.recent_scans)
        ]
        reasons = agent.health_reasons
        return AgentStatus(
            agent=AgentInfo(
                site=cfg.agent.site,
                node=cfg.agent.node,
                version=__version__,
                started=agent.state.started,
                uptime_s=time.monotonic() - self._started_mono,
                clock_synced=agent.state.clock_synced,
            ),
            health=Health(ok=not reasons, reasons=list(reasons)),
            devices=devices,
            destinations=destinations,
            batch=batch,
            recent_batches=recent_batches,
            recent_scans=scans,
            alarms=agent.alarms.active(),
        )

    async def wait_changed(self, seen: int) -> int:
        """The change counter, as soon as it differs from `seen`."""
        return await self._agent.state.wait_changed(seen)

    async def events(self, *, limit: int, type: str | None) -> list[dict[str, Any]]:  # noqa: A002
        """The most recent envelopes, newest first."""
        routes = frozenset({type}) if type else None
        envelopes = await self._agent.outbox.recent(limit=limit, routes=routes)
        return [json.loads(e.payload) for e in envelopes]

    async def trace(self, code: str) -> dict[str, Any] | None:
        """The trace chain of a code, as `lineside trace --json`; None if unknown here.

        A read-only connection of its own, so a trace never queues behind (or blocks) the
        publishers on the outbox's reader connection.
        """
        async with HistoryReader(outbox_path(self._agent.config.agent.data_dir)) as history:
            return await trace(history, code)

    async def set_work_order(
        self, work_order: str | None, gtin: str | None, lot: str | None, planned_qty: int | None
    ) -> None:
        """Set or clear the running work order of the line."""
        try:  # the same rules as the MES command: a GTIN-14 with its check digit, a GS1 lot
            checked = WorkOrderCommand(
                work_order=work_order, gtin=gtin, lot=lot, planned_qty=planned_qty
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValueError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from exc
        order = WorkOrder(
            checked.work_order,
            checked.gtin or self._agent.config.line.gtin,
            checked.lot,
            checked.planned_qty,
        )
        await self._agent.set_work_order(order)

    async def acknowledge_alarm(self, alarm_id: str) -> None:
        """Mark an alarm as seen."""
        try:
            self._agent.alarms.acknowledge(alarm_id)
        except KeyError as exc:
            raise ValueError(f"no active alarm {alarm_id!r}") from exc
        self._agent.state.touch()

    async def resend_from(self, destination: str, seq: int) -> None:
        """Re-send one destination from `seq`."""
        publisher = self._agent.publisher(destination)
        if seq < 1 or seq > self._agent.outbox.last_seq:
            raise ValueError(f"seq must be within 1..{self._agent.outbox.last_seq}")
        await publisher.resend_from(seq - 1)  # the cursor is the last seq delivered

    async def quarantine(self) -> list[QuarantinedEvent]:
        """Events parked in quarantine, all destinations."""
        return [
            QuarantinedEvent(
                destination=q.dest,
                seq=q.seq,
                id=q.id,
                type=q.route,
                reason=q.reason,
                quarantined_at=datetime.fromtimestamp(q.time, UTC),
            )
            for q in await self._agent.outbox.quarantined(None)
        ]

    async def release(self, destination: str, seq: int) -> None:
        """Send a quarantined event again."""
        self._agent.publisher(destination)
        if not await self._agent.outbox.release(destination, seq):
            raise ValueError(f"{destination} has no quarantined event {seq}")
        self._agent.state.touch()

    async def drop(self, destination: str, seq: int) -> None:
        """Give up on a quarantined event (it stays in history)."""
        self._agent.publisher(destination)
        if not await self._agent.outbox.drop(destination, seq):
            raise ValueError(f"{destination} has no quarantined event {seq}")
        self._agent.state.touch()


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _plc_values(values: dict[str, object]) -> dict[str, str]:
    """The PLC's process parameters as last read, for the device list (batch signals left out)."""
    shown: dict[str, str] = {}
    for key, value in values.items():
        if key.startswith("param:"):
            name = key.removeprefix("param:")
        elif key in {"trigger", "ack", "quantity"}:
            continue
        else:
            name = key  # a watch-only PLC: its params are read under their own names
        shown[name] = f"{value:.2f}" if isinstance(value, float) else str(value)
    return shown


def read_admin_password(path: Path | None) -> SecretStr | None:
    """The admin password from its file (trailing newline stripped); `ConfigError` if unreadable."""
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"status.admin_password_file: cannot read {path}: {exc}"]) from exc
    if not text:
        raise ConfigError([f"status.admin_password_file: {path} is empty"])
    return SecretStr(text)


def status_server(agent: Agent, password: SecretStr | None) -> Callable[[], Awaitable[None]]:
    """The `status` task's coroutine function: the page served on `[status] listen`."""
    app = create_app(
        RuntimeView(agent),
        metrics=agent.metrics,
        password=password,
        audit_log=agent.config.agent.data_dir / "audit.log",
        version=__version__,
    )

    async def run() -> None:
        async with StatusServer(
            app, host=agent.config.status.host, port=agent.config.status.port
        ) as server:
            agent.status_url = server.url
            await server.serve_forever()

    return run
