"""The publisher against a real outbox file and an in-memory Sink that records what it got."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self

from support import wait_until

from sync.base import Draft, Envelope, SinkRejected, SinkUnavailable
from sync.outbox import Outbox
from sync.publisher import SPAN_FACTOR, Publisher

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence
    from pathlib import Path
    from types import TracebackType


@dataclass
class MemoryDestination:
    """The far side of `MemorySink`: what arrived, and what the test wants to go wrong."""

    window: int = 4
    max_batch: int = 5
    sent: list[Envelope] = field(default_factory=list)  # in order of send start
    acked: list[int] = field(default_factory=list)  # seqs in order of acknowledgement
    connects: int = 0
    refuse_connects: int = 0  # the next N connects fail
    fail_sends: set[int] = field(default_factory=set)  # sends (by index) that lose the link
    refuse_after_loss: int = 0  # connects refused after each lost link
    reject_ids: set[str] = field(default_factory=set)
    down: bool = False
    in_flight: int = 0
    max_in_flight: int = 0
    sends: int = 0

    def delay(self, index: int) -> float:
        # later sends of a window finish first, so acknowledgements come out of order
        return 0.002 * (3 - index % 4)

    def sink(self) -> MemorySink:
        return MemorySink(self)


class MemorySink:
    """A real Sink that delivers into a `MemoryDestination`."""

    def __init__(self, dest: MemoryDestination) -> None:
        self._dest = dest

    @property
    def max_batch(self) -> int:
        return self._dest.max_batch

    @property
    def window(self) -> int:
        return self._dest.window

    async def __aenter__(self) -> Self:
        if self._dest.down:
            raise SinkUnavailable("connection refused", retry_after=0.01)
        if self._dest.refuse_connects:
            self._dest.refuse_connects -= 1
            raise SinkUnavailable("connection refused")
        self._dest.connects += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def send(self, batch: Sequence[Envelope]) -> None:
        d = self._dest
        index = d.sends
        d.sends += 1
        d.sent.extend(batch)
        d.in_flight += 1
        d.max_in_flight = max(d.max_in_flight, d.in_flight)
        try:
            await asyncio.sleep(d.delay(index))
            if index in d.fail_sends:
                d.refuse_connects = d.refuse_after_loss
                raise SinkUnavailable("connection lost")
            rejected = [e.id for e in batch if e.id in d.reject_ids]
            if rejected:
                d.acked.extend(e.seq for e in batch if e.id not in d.reject_ids)
                raise SinkRejected("422 bad event", ids=rejected)
            d.acked.extend(e.seq for e in batch)
        finally:
            d.in_flight -= 1


def draft(n: int, route: str = "scan") -> Draft:
    return Draft(id=f"id-{n}", route=route, head=f"{n}:".encode(), tail=b"")


@contextlib.asynccontextmanager
async def running(*publishers: Publisher) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(p.run(), name=f"sync:{p.name}") for p in publishers]
    try:
        yield
        for task in tasks:
            assert not task.done(), task
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def publisher(
    outbox: Outbox, name: str, factory: Callable[[], MemorySink], **kw: object
) -> Publisher:
    routes = kw.pop("routes", frozenset({"*"}))
    assert isinstance(routes, frozenset)
    return Publisher(outbox, name, factory, routes=routes, page=7, backoff_cap=0.05)


def first_sent_order(dest: MemoryDestination) -> list[int]:
    seen: dict[int, None] = {}
    for e in dest.sent:
        seen.setdefault(e.seq, None)
    return list(seen)


async def test_in_order_with_a_sliding_window(tmp_path: Path) -> None:
    dest = MemoryDestination()
    async with Outbox(tmp_path / "o.db", min_free_bytes=0) as outbox:
        await outbox.append_many([draft(i) for i in range(60)])
        pub = publisher(outbox, "d", dest.sink)
        async with running(pub):
            await wait_until(lambda: outbox.cursor("d") == 60, what="cursor at 60")
            for i in range(60, 80):  # live traffic after catching up
                await outbox.append(draft(i))
            await wait_until(lambda: outbox.cursor("d") == 80, what="cursor at 80")
        health = pub.health
    assert [e.seq for e in dest.sent] == list(range(1, 81))
    assert dest.max_in_flight > 1
    assert dest.acked != sorted(dest.acked)  # completions out of order...
    assert health.delivered == 80  # ...still a contiguous cursor
    assert health.connected is False  # stopped
    assert health.reconnects == 0


async def test_unavailable_reconnects_and_resumes_without_loss(tmp_path: Path) -> None:
    dest = MemoryDestination(fail_sends={5, 14}, refuse_after_loss=2)
    async with Outbox(tmp_path / "o.db", min_free_bytes=0) as outbox:
        await outbox.append_many([draft(i) for i in range(100)])
        pub = publisher(outbox, "d", dest.sink)
        async with running(pub):
            await wait_until(lambda: outbox.cursor("d") == 100, what="cursor at 100")
            health = pub.health
    assert {e.seq for e in dest.sent} == set(range(1, 101))
    assert first_sent_order(dest) == list(range(1, 101))
    duplicates = len(dest.sent) - 100
    # two losses, each re-sending at most the span after the cursor (SPAN_FACTOR windows)
    assert 0 < duplicates <= 2 * SPAN_FACTOR * dest.window * dest.max_batch
    assert health.connected
    assert health.reconnects == 2
    assert health.last_error == "connection refused"
    assert health.backlog == 0


async def test_rejected_go_to_quarantine_and_release_resends(tmp_path: Path) -> None:
    dest = MemoryDestination(reject_ids={"id-3", "id-7"})
    async with Outbox(tmp_path / "o.db", min_free_bytes=0) as outbox:
        await outbox.append_many([draft(i) for i in range(20)])
        pub = publisher(outbox, "d", dest.sink)
        async with running(pub):
            await wait_until(lambda: outbox.cursor("d") == 20, what="cursor past rejects")
            entries = await outbox.quarantined("d")
            assert [(q.id, q.reason) for q in entries] == [
                ("id-3", "422 bad event"),
                ("id-7", "422 bad event"),
            ]
            dest.reject_ids.clear()
            assert await outbox.release("d", entries[0].seq)
            await wait_until(lambda: dest.acked.count(4) == 1, what="id-3 re-sent")
            await wait_until(lambda: pub.health.quarantined == 1, what="one left")
            assert [q.id for q in await outbox.quarantined("d")] == ["id-7"]
            await outbox.append(draft(20))
            await wait_until(lambda: outbox.cursor("d") == 21, what="new traffic flows")
    assert dest.acked.count(8) == 0  # id-7 stays parked


async def test_destinations_are_independent(tmp_path: Path) -> None:
    good, bad = MemoryDestination(), MemoryDestination(down=True)
    async with Outbox(tmp_path / "o.db", min_free_bytes=0, destinations=["good", "bad"]) as outbox:
        routes = ["scan", "batch"] * 20
        await outbox.append_many([draft(i, r) for i, r in enumerate(routes)])
        p_good = Publisher(
            outbox, "good", good.sink, routes=frozenset({"batch"}), page=3, backoff_cap=0.05
        )
        p_bad = Publisher(outbox, "bad", bad.sink, routes=frozenset({"*"}), backoff_cap=0.05)
        async with running(p_good, p_bad):
            await wait_until(lambda: outbox.cursor("good") == 40, what="good caught up")
            await wait_until(lambda: p_bad.health.last_error is not None, what="bad down")
            await wait_until(lambda: p_bad.health.backlog == 40, what="bad backlog measured")
            assert p_bad.health.connected is False
            assert outbox.cursor("bad") == 0
            bad.down = False
            await wait_until(lambda: outbox.cursor("bad") == 40, what="bad recovered")
    assert [e.route for e in good.sent] == ["batch"] * 20
    assert [e.seq for e in bad.sent] == list(range(1, 41))


async def test_resend_from_rewinds(tmp_path: Path) -> None:
    dest = MemoryDestination()
    async with Outbox(tmp_path / "o.db", min_free_bytes=0) as outbox:
        await outbox.append_many([draft(i) for i in range(30)])
        pub = publisher(outbox, "d", dest.sink)
        async with running(pub):
            await wait_until(lambda: outbox.cursor("d") == 30, what="delivered once")
            await pub.resend_from(25)
            await wait_until(lambda: len(dest.acked) == 35, what="re-sent 26..30")
            await wait_until(lambda: outbox.cursor("d") == 30, what="cursor back at the end")
    assert sorted(dest.acked[30:]) == [26, 27, 28, 29, 30]
