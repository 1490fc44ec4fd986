"""The backlog drain of `lineside bench`, run in a process of its own so its peak RSS is its own.

It imports only `sync/` (no web, no GS1 parser), as a running agent's delivery side would.
`python -m agent.cli.bench_drain DB BROKER_URL EVENTS` opens the outbox file (already filled with
`EVENTS` undelivered events), runs the agent's publisher until every event is acknowledged and
prints one JSON line: `{"drain_events_per_s": ..., "peak_rss_mb": ...}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sync.acked import AckedSink
from sync.mqtt import MqttSink
from sync.mqtt_config import MqttDestinationConfig
from sync.outbox import Outbox
from sync.publisher import Publisher

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from sync.base import Envelope, Sink
    from sync.topics import Topics

SITE, NODE = "bench", "line-1"
WINDOW = 100  # in-flight QoS 1 publishes, for the agent's sink and the raw baseline alike
ONLINE, OFFLINE = b'{"online":true}', b'{"online":false}'


def mqtt_config(broker_url: str) -> MqttDestinationConfig:
    """The bench's destination: the broker under test, QoS 1 with the bench's window."""
    return MqttDestinationConfig(name="bench", kind="mqtt", url=broker_url, window=WINDOW)


def bench_topics() -> Topics:
    """Where the bench's events go (`lineside/v1/bench/line-1/...`)."""
    return mqtt_config("mqtt://127.0.0.1").topics(SITE, NODE)


@dataclass
class DeliveryWatch:
    """How many events were acknowledged, and when, for seqs after `timed_after`.

    Only the timed seqs keep a time: a dict entry per drained event would be the bench's own
    memory, counted in the drain's peak RSS.
    """

    count: int = 0
    timed_after: int | None = None
    acked: dict[int, float] = field(default_factory=dict)
    target: int = 0
    _reached: asyncio.Event = field(default_factory=asyncio.Event)

    def acknowledged(self, batch: Sequence[Envelope]) -> None:
        """Called after each acknowledged send."""
        self.count += len(batch)
        if self.timed_after is not None:
            now = time.monotonic()
            for envelope in batch:
                if envelope.seq > self.timed_after:
                    self.acked[envelope.seq] = now
        if self.count >= self.target:
            self._reached.set()

    async def wait(self, target: int) -> None:
        """Return once `target` events are acknowledged."""
        self.target = target
        self._reached.clear()
        if self.count >= target:
            return
        await self._reached.wait()


@contextlib.asynccontextmanager
async def delivering(
    outbox: Outbox, broker_url: str, watch: DeliveryWatch
) -> AsyncIterator[Publisher]:
    """The agent's publisher for the bench destination, running until the block ends."""
    config = mqtt_config(broker_url)

    def sink() -> Sink:
        real = MqttSink(
            config,
            topics=bench_topics(),
            client_id=f"lineside-bench-{time.monotonic_ns()}",
            online_payload=ONLINE,
            offline_payload=OFFLINE,
        )
        return AckedSink(real, watch.acknowledged)

    publisher = Publisher(outbox, "bench", sink, routes=frozenset({"*"}))
    task = asyncio.create_task(publisher.run(), name="sync:bench")
    try:
        yield publisher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def drain(path: Path, broker_url: str, events: int) -> dict[str, float]:
    """Deliver the whole backlog of `path`; the rate and this process's peak RSS."""
    watch = DeliveryWatch()
    async with Outbox(path, synchronous="full", destinations=["bench"]) as outbox:
        started = time.monotonic()
        async with delivering(outbox, broker_url, watch):
            await watch.wait(events)
            elapsed = time.monotonic() - started
    return {"drain_events_per_s": events / elapsed, "peak_rss_mb": peak_rss_kib() / 1024}


def peak_rss_kib() -> int:
    """This process's peak resident set, in KiB.

    Linux's VmHWM, not `ru_maxrss`: a process started by fork and exec inherits the parent's
    `ru_maxrss` (the bench's own, after its end-to-end run), while VmHWM is this image's.
    """
    try:
        with Path("/proc/self/status").open() as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def main(argv: list[str]) -> int:
    """Entry point of the child process."""
    path, broker_url, events = Path(argv[0]), argv[1], int(argv[2])
    result = asyncio.run(drain(path, broker_url, events))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
