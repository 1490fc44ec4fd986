"""An in-memory StatusView (a real implementation of our own protocol) and a real server for it.

The fake words its own refusals and health reasons as the fake's (`refused by the fake view:
...`), never as the agent would: a test that reads one tests that the app hands the view's
words on, not the agent's words. The real view's (`agent.runtime.status.RuntimeView`) are
tested in test_runtime_view.py and on the running agent.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agent.web import StatusServer
from agent.web.view import (
    AgentInfo,
    AgentStatus,
    BatchStatus,
    CompletedBatch,
    DestinationStatus,
    DeviceStatus,
    Health,
    LineBatches,
    PrinterStatus,
    QuarantinedEvent,
    RecentScan,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI

    from agent.alarms import Alarm


REFUSED = "refused by the fake view:"
"""How every refusal of the fake begins: no agent ever words one so."""


def _now() -> datetime:
    return datetime.now(UTC)


@contextlib.asynccontextmanager
async def serving(app: FastAPI, **options: Any) -> AsyncIterator[StatusServer]:
    """`app` on a real uvicorn on a free loopback port, its live-stream feed running beside it."""
    async with StatusServer(app, host="127.0.0.1", port=0, **options) as server:
        serve = asyncio.create_task(server.serve_forever(), name="status")
        feed = asyncio.create_task(app.state.feed.run(), name="status-feed")
        try:
            yield server
        finally:
            server.stop()
            feed.cancel()
            await asyncio.gather(serve, feed, return_exceptions=True)


@dataclass
class FakeView:
    """Mutable agent state; every change bumps the counter the live stream waits on."""

    devices: list[DeviceStatus] = field(default_factory=list)
    destinations: list[DestinationStatus] = field(default_factory=list)
    batch: BatchStatus | None = None
    recent_batches: list[CompletedBatch] = field(default_factory=list)
    recent_scans: list[RecentScan] = field(default_factory=list)
    alarms: list[Alarm] = field(default_factory=list)
    envelopes: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    quarantined: list[QuarantinedEvent] = field(default_factory=list)
    resends: list[tuple[str, int]] = field(default_factory=list)
    work_order_lines: list[str | None] = field(default_factory=list)  # the line of each order
    traces: dict[str, dict[str, Any]] = field(default_factory=dict)
    label_decisions: list[tuple[str, int, str]] = field(default_factory=list)
    printers: list[PrinterStatus] = field(default_factory=list)
    started: datetime = field(default_factory=_now)
    version: int = 0
    snapshots: int = 0  # how many times status() was built
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def healthy(cls) -> FakeView:
        """A line where everything is connected and a batch is running."""
        now = _now()
        return cls(
            devices=[
                DeviceStatus("dock-in-1", "scanner", "inbound", True, last_seen=now),
                DeviceStatus("filler", "plc", "line", True, last_seen=now),
            ],
            destinations=[
                DestinationStatus("plant-broker", "mqtt", True, delivered=41),
                DestinationStatus("erp", "http", True, delivered=3),
            ],
            batch=BatchStatus("WO-7", "09501101530003", "L241124", now, materials=2),
            recent_batches=[
                CompletedBatch(
                    "(01)09501101530003(10)L241123(11)241123(21)000041", "L241123", 960, now
                )
            ],
        )

    # --- test controls -------------------------------------------------------------------

    def touch(self) -> None:
        """Announce a change to waiting live streams."""
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def add_scan(self, raw: str, *, device: str = "dock-in-1", reason: str | None = None) -> None:
        """Record a scan (rejected if `reason` is given) and its envelope."""
        type_ = "scan.rejected" if reason else "goods.received"
        self.recent_scans.insert(0, RecentScan(_now(), device, type_, raw, reason=reason))
        data: dict[str, Any] = {"raw": raw}
        if reason:
            data["reason"] = reason
        self.envelopes.append(
            {
                "id": f"id-{len(self.envelopes) + 1}",
                "type": type_,
                "seq": len(self.envelopes) + 1,
                "source": f"scanner:{device}",
                "data": data,
            }
        )
        self.touch()

    def set_destination(self, name: str, **changes: Any) -> None:
        """Change one destination's state."""
        self.destinations = [
            replace(d, **changes) if d.name == name else d for d in self.destinations
        ]
        self.touch()

    def health(self) -> Health:
        """Down when a destination or a device is disconnected."""
        reasons = [
            f"fake view: destination {d.name} down" for d in self.destinations if not d.connected
        ]
        reasons += [f"fake view: device {d.id} down" for d in self.devices if not d.connected]
        return Health(ok=not reasons, reasons=reasons)

    # --- the StatusView protocol ------------------------------------------------------------

    def status(self) -> AgentStatus:
        self.snapshots += 1
        now = _now()
        return AgentStatus(
            agent=AgentInfo(
                "plant-a",
                "line-3",
                "0.1.0",
                self.started,
                (now - self.started).total_seconds(),
                clock_synced=True,
            ),
            health=self.health(),
            devices=list(self.devices),
            destinations=list(self.destinations),
            batch=self.batch,
            recent_batches=list(self.recent_batches),
            batches=[LineBatches("filler", self.batch, None, list(self.recent_batches))],
            recent_scans=self.recent_scans[:20],
            alarms=list(self.alarms),
            printers=list(self.printers),
        )

    async def wait_changed(self, seen: int) -> int:
        while self.version == seen:
            await self._changed.wait()
        return self.version

    async def events(self, *, limit: int, type: str | None) -> list[dict[str, Any]]:  # noqa: A002
        chosen = [e for e in reversed(self.envelopes) if type is None or e["type"] == type]
        return chosen[:limit]

    async def trace(self, code: str) -> dict[str, Any] | None:
        return self.traces.get(code)

    async def set_work_order(
        self,
        work_order: str | None,
        gtin: str | None,
        lot: str | None,
        planned_qty: int | None,
        line: str | None = None,
    ) -> None:
        self.work_order_lines.append(line)
        if work_order is None and gtin is None and lot is None:
            self.batch = None
        else:
            if gtin is not None and (len(gtin) != 14 or not gtin.isdigit()):
                raise ValueError(f"{REFUSED} GTIN {gtin!r}")
            self.batch = BatchStatus(
                work_order, gtin or "09501101530003", lot or "L1", _now(), planned_qty=planned_qty
            )
        self.touch()

    async def acknowledge_alarm(self, alarm_id: str) -> None:
        if not any(a.id == alarm_id for a in self.alarms):
            raise ValueError(f"{REFUSED} alarm {alarm_id!r}")
        self.alarms = [
            replace(a, acknowledged=True) if a.id == alarm_id else a for a in self.alarms
        ]
        self.touch()

    async def resend_from(self, destination: str, seq: int) -> None:
        if not any(d.name == destination for d in self.destinations):
            raise ValueError(f"{REFUSED} destination {destination!r}")
        self.resends.append((destination, seq))

    async def quarantine(self) -> list[QuarantinedEvent]:
        return list(self.quarantined)

    def _take(self, destination: str, seq: int) -> None:
        kept = [q for q in self.quarantined if (q.destination, q.seq) != (destination, seq)]
        if len(kept) == len(self.quarantined):
            raise ValueError(f"{REFUSED} quarantined {destination!r} #{seq}")
        self.quarantined = kept
        self.touch()

    async def release(self, destination: str, seq: int) -> None:
        self._take(destination, seq)

    async def drop(self, destination: str, seq: int) -> None:
        self._take(destination, seq)

    async def decide_label(self, printer: str, job: int, action: str) -> None:
        if printer != "labeller-1" or job != 1:
            raise ValueError(f"printer {printer} has no undecided job {job}")
        self.label_decisions.append((printer, job, action))
