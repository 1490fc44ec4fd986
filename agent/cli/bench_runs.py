"""The measurements of `lineside bench`: the durable path and its baselines, one function each.

Every run gets a broker URL and a fresh directory and returns plain numbers. The durable path is
the agent's own code (ScanStation → interpretation → EventFactory → Outbox group commit →
Publisher → MqttSink QoS 1 → PUBACK → cursor); the baselines are written the way an integrator
would write them, with the same payloads, so the ratios compare like with like.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Self
from urllib.parse import urlsplit

import aiomqtt

from agent.alarms import AlarmBoard
from agent.cli.bench_drain import NODE, SITE, WINDOW, DeliveryWatch, bench_topics, delivering
from agent.config.scanners import StationRole
from agent.events import EventFactory
from agent.scanning.interpret import StationRules
from agent.scanning.station import ScanStation
from drivers.base import DeviceHealth, ScanReading
from sync.outbox import Outbox

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

GS = "\x1d"


def sample_scans(count: int) -> list[bytes]:
    """Realistic inbound-dock GS1 DataMatrix reads (GTIN, expiry, lot, serial), all valid."""
    return [
        f"]d20109501101530003172712311 0L{i % 997:04d}{GS}21{i:08d}".replace(" ", "").encode()
        for i in range(count)
    ]


class BenchScanner:
    """An in-memory scanner (implements `drivers.base.Scanner`): readings are handed in."""

    def __init__(self, ident: str) -> None:
        self._id = ident
        self._health = DeviceHealth(ident, connected=True)
        self.replies = 0

    @property
    def id(self) -> str:
        """The scanner's id."""
        return self._id

    @property
    def health(self) -> DeviceHealth:
        """Always connected."""
        return self._health

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def readings(self) -> AsyncIterator[ScanReading]:  # pragma: no cover - not used
        """Not used: the bench calls `ScanStation.handle` itself."""
        return
        yield

    async def stream(self) -> AsyncIterator[ScanReading]:  # pragma: no cover - not used
        """Not used."""
        return
        yield

    async def reply(self, *, accepted: bool) -> None:
        """Count the good-read answers (a NAK means the bench itself went wrong)."""
        if not accepted:
            raise RuntimeError(f"bench scanner {self._id}: a read was refused")
        self.replies += 1


def _stations(outbox: Outbox, count: int) -> list[ScanStation]:
    factory = EventFactory(SITE, NODE)
    alarms = AlarmBoard()
    return [
        ScanStation(
            BenchScanner(f"dock-in-{i}"),
            StationRules(StationRole.INBOUND),
            factory=factory,
            outbox=outbox,
            alarms=alarms,
        )
        for i in range(count)
    ]


def _reading(station: ScanStation, data: bytes) -> ScanReading:
    return ScanReading(station.scanner.id, data, datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class E2eResult:
    """Sustained end-to-end rate, latency at a fixed rate, and idle CPU."""

    events_per_s: float
    p50_ms: float
    p99_ms: float
    idle_cpu_percent: float
    good_read_p99_ms: float  # scan -> good-read reply (committed), beside the PUBACK p99


async def measure_e2e(
    workdir: Path,
    broker_url: str,
    *,
    events: int,
    rate: float,
    paced: int,
    idle_s: float,
    scanners: int = 32,
) -> E2eResult:
    """The agent's durable path under full load, then paced at `rate`, then idle."""
    watch = DeliveryWatch()
    async with Outbox(workdir / "e2e.db", synchronous="full", destinations=["bench"]) as outbox:
        stations = _stations(outbox, scanners)
        scans = sample_scans(events + paced)
        async with delivering(outbox, broker_url, watch):
            await watch.wait(0)
            # sustained: every scanner reads as fast as commits allow
            started = time.monotonic()

            async def scan_all(station: ScanStation, mine: list[bytes]) -> None:
                for data in mine:
                    await station.handle(_reading(station, data))

            async with asyncio.TaskGroup() as group:
                for i, station in enumerate(stations):
                    group.create_task(scan_all(station, scans[i:events:scanners]))
            await watch.wait(events)
            sustained = events / (time.monotonic() - started)
            # latency: one scan every 1/rate s, scan start → PUBACK
            scanned: dict[int, float] = {}
            good_reads: list[float] = []
            watch.timed_after = outbox.last_seq
            station = stations[0]
            loop = asyncio.get_running_loop()
            begin = loop.time()
            for i, data in enumerate(scans[events:]):
                await asyncio.sleep(max(0.0, begin + i / rate - loop.time()))
                t0 = time.monotonic()
                envelope = await station.handle(_reading(station, data))
                good_reads.append((time.monotonic() - t0) * 1000)  # handle returns after the reply
                assert envelope is not None
                scanned[envelope.seq] = t0
            await watch.wait(events + paced)
            latencies = sorted((watch.acked[s] - t0) * 1000 for s, t0 in scanned.items())
            # idle: connected, nothing to do
            cpu0, wall0 = time.process_time(), time.monotonic()
            await asyncio.sleep(idle_s)
            idle = (time.process_time() - cpu0) / (time.monotonic() - wall0) * 100
    return E2eResult(
        sustained,
        _percentile(latencies, 50),
        _percentile(latencies, 99),
        idle,
        _percentile(sorted(good_reads), 99),
    )


async def measure_intake(workdir: Path, *, events: int, scanners: int = 32) -> float:
    """Intake alone: scan -> interpretation -> outbox commit (synchronous=full), no delivery."""
    async with Outbox(workdir / "intake.db", synchronous="full", destinations=["bench"]) as outbox:
        stations = _stations(outbox, scanners)
        scans = sample_scans(events)
        started = time.monotonic()

        async def scan_all(station: ScanStation, mine: list[bytes]) -> None:
            for data in mine:
                await station.handle(_reading(station, data))

        async with asyncio.TaskGroup() as group:
            for i, station in enumerate(stations):
                group.create_task(scan_all(station, scans[i::scanners]))
        return events / (time.monotonic() - started)


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, round(pct / 100 * (len(sorted_values) - 1)))
    return sorted_values[index]


def sample_payloads(count: int) -> list[bytes]:
    """Envelopes as the agent makes them, for the baselines (same sizes, same JSON)."""
    factory = EventFactory(SITE, NODE)
    data = {"raw": "x" * 40, "symbology": "]d2", "gs1": {"01": "09501101530003"}}
    return [
        factory.draft("goods.received", "scanner:dock-in-0", data).payload(i + 1)
        for i in range(count)
    ]


def _client(broker_url: str, name: str) -> aiomqtt.Client:
    parts = urlsplit(broker_url)
    client = aiomqtt.Client(
        parts.hostname or "127.0.0.1",
        parts.port or 1883,
        identifier=f"lineside-bench-{name}-{time.monotonic_ns()}",
        max_inflight_messages=WINDOW,
        max_concurrent_outgoing_calls=WINDOW + 1,
    )
    client.pending_calls_threshold = WINDOW + 1
    return client


async def measure_naive(workdir: Path, broker_url: str, *, events: int) -> float:
    """Insert+commit, publish, wait for the PUBACK, mark delivered+commit; one at a time."""
    payloads = sample_payloads(events)
    db = sqlite3.connect(workdir / "naive.db", isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, payload BLOB, delivered INTEGER)")
        async with _client(broker_url, "naive") as client:
            started = time.monotonic()
            for payload in payloads:
                seq = db.execute(
                    "INSERT INTO events (payload, delivered) VALUES (?, 0)", (payload,)
                ).lastrowid
                await client.publish(bench_topics().event("goods.received"), payload, qos=1)
                db.execute("UPDATE events SET delivered = 1 WHERE seq = ?", (seq,))
            return events / (time.monotonic() - started)
    finally:
        db.close()


async def measure_raw_publish(broker_url: str, *, messages: int) -> float:
    """Aiomqtt QoS 1 publish with a sliding window of `WINDOW` in flight and no storage."""
    payloads = sample_payloads(messages)
    topic = bench_topics().event("goods.received")
    async with _client(broker_url, "raw") as client:
        room = asyncio.Semaphore(WINDOW)

        async def publish(payload: bytes) -> None:
            try:
                await client.publish(topic, payload, qos=1)
            finally:
                room.release()

        started = time.monotonic()
        async with asyncio.TaskGroup() as group:
            for payload in payloads:
                await room.acquire()
                group.create_task(publish(payload))
        return messages / (time.monotonic() - started)


def write_backlog(path: Path, *, events: int, batch: int = 1000) -> float:
    """Fill an outbox file with `events` undelivered events by raw batched sqlite3 inserts.

    Returns the insert rate: the "raw sqlite3 batched inserts" baseline. The file must already
    have the outbox's schema (open and close an `Outbox` on it first).
    """
    template = sample_payloads(1)[0]
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        cum, now = 0, time.time()
        started = time.monotonic()
        for start in range(1, events + 1, batch):
            rows = []
            for seq in range(start, min(events, start + batch - 1) + 1):
                payload = template.replace(b'"seq":1,', b'"seq":%d,' % seq)
                cum += len(payload)
                rows.append((seq, f"bench-{seq:012d}", "goods.received", payload, now, cum))
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO events (seq, id, route, payload, created, cum_bytes)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.execute("COMMIT")
        return events / (time.monotonic() - started)
    finally:
        db.close()
