"""One destination's publisher: outbox cursor -> sink, in order, with a sliding in-flight window.

`Publisher.run` connects the sink, reads from the destination's cursor in seq order and keeps up
to `sink.window` `send` calls of up to `sink.max_batch` envelopes in flight, starting a new one
as soon as any completes. The cursor only moves over the contiguous acknowledged prefix, so a
lost connection re-sends just the in-flight window (same ids: at-least-once). Refused envelopes
go to quarantine and no longer hold the cursor; released ones are re-sent ahead of new traffic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sync.base import Envelope, Lingering, LinkWatcher, Sink, SinkRejected, SinkUnavailable
from sync.faults import fault_point
from sync.outbox import Backlog, Generation
from sync.retry import RECONNECT_CAP_S, reconnect_delay, retry_after_delay

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sync.outbox import Outbox

log = logging.getLogger(__name__)

HEALTH_PERIOD_S = 1.0
SPAN_FACTOR = 2


@dataclass(frozen=True, slots=True)
class DestinationHealth:
    """What the status page shows of one destination."""

    name: str
    connected: bool
    delivered: int
    last_delivered_time: float | None
    backlog: int
    backlog_bytes: int
    oldest_undelivered_age_s: float | None
    quarantined: int
    last_error: str | None
    last_error_time: float | None
    reconnects: int


@dataclass(slots=True, eq=False)
class _Batch:
    """Envelopes of one send and `end`, the seq the cursor may take once it and all before are done.

    `end` also covers rows skipped by the route filter.
    """

    envelopes: Sequence[Envelope]
    end: int
    done: bool = False
    sent: float = 0.0  # time.monotonic() when the send started


@dataclass(slots=True)
class _Window:
    """The in-flight sends of one connection and the contiguous acknowledged prefix."""

    cursor: int
    read_to: int
    generation: Generation
    order: deque[_Batch] = field(default_factory=deque)
    tasks: dict[asyncio.Task[None], _Batch] = field(default_factory=dict)
    buffered: deque[Envelope] = field(default_factory=deque)
    page_end: int = 0
    # the sink's, asked once per connection (an isinstance of a Protocol is slow)
    linger: float = 0.0
    # the sink's `link_lost`, one task per connection (None: the sink does not watch its link)
    link: asyncio.Task[str] | None = None

    def has_room(self, window: int) -> bool:
        """Whether another send may start.

        At most `window` sends run at once, and the batches after the cursor (acknowledged out
        of order or in flight) span at most `SPAN_FACTOR * window`: what a lost connection
        re-sends stays bounded even when one acknowledgement is slow.
        """
        return len(self.tasks) < window and len(self.order) < SPAN_FACTOR * window


class Publisher:
    """Delivers one destination's share of the outbox through its sink."""

    def __init__(
        self,
        outbox: Outbox,
        name: str,
        sink_factory: Callable[[], Sink],
        *,
        routes: frozenset[str],
        page: int = 500,
        backoff_cap: float = RECONNECT_CAP_S,
        on_ack: Callable[[float], None] | None = None,
    ) -> None:
        """`on_ack(seconds)` is told each send's time to acknowledgement (for metrics)."""
        if not name:
            raise ValueError("a publisher needs a destination name")
        if not routes:
            raise ValueError(f"destination {name}: routes must not be empty (use '*' for all)")
        if page < 1:
            raise ValueError(f"destination {name}: page must be at least 1, not {page}")
        if backoff_cap <= 0:
            raise ValueError(f"destination {name}: backoff_cap must be positive")
        self._outbox = outbox
        self._name = name
        self._sink_factory = sink_factory
        self._routes: frozenset[str] | None = None if "*" in routes else frozenset(routes)
        self._page = page
        self._backoff_cap = backoff_cap
        self._on_ack = on_ack
        self._connected = False
        self._ever_connected = False
        self._down_logged = False
        self._failures = 0
        self._delivered = 0
        self._last_delivered: float | None = None
        self._last_error: str | None = None
        self._last_error_time: float | None = None
        self._reconnects = 0
        self._backlog: Backlog | None = None
        self._quarantined = 0
        self._measured = 0.0

    @property
    def name(self) -> str:
        """The destination's name."""
        return self._name

    @property
    def health(self) -> DestinationHealth:
        """Connection, delivery and backlog figures (backlog measured at most ~1 s ago)."""
        backlog = self._backlog
        oldest = None if backlog is None else backlog.oldest_created
        return DestinationHealth(
            name=self._name,
            connected=self._connected,
            delivered=self._delivered,
            last_delivered_time=self._last_delivered,
            backlog=0 if backlog is None else backlog.count,
            backlog_bytes=0 if backlog is None else backlog.bytes,
            oldest_undelivered_age_s=None if oldest is None else max(0.0, time.time() - oldest),
            quarantined=self._quarantined,
            last_error=self._last_error,
            last_error_time=self._last_error_time,
            reconnects=self._reconnects,
        )

    async def resend_from(self, seq: int) -> None:
        """Re-send everything retained after `seq` (rewinds the destination's cursor)."""
        await self._outbox.rewind(self._name, seq)

    async def run(self) -> None:
        """Deliver for ever; reconnect with full-jitter backoff. Cancel to stop."""
        while True:
            try:
                async with self._sink_factory() as sink:
                    await self._pump(sink)
            except SinkUnavailable as exc:
                self._mark_down(exc)
                self._failures += 1
                if exc.retry_after is not None:
                    delay = retry_after_delay(exc.retry_after)
                else:
                    delay = reconnect_delay(self._failures, cap_s=self._backoff_cap)
                await self._wait_out(delay)
            finally:
                self._connected = False

    # -- health ------------------------------------------------------------------------------

    def _mark_up(self) -> None:
        """The destination works: it answered a send, or the link opened with nothing to send.

        Not on opening the link alone: an HTTP or file sink "opens" without asking the far
        side, so a receiver answering 503 would otherwise flap between up and down.
        """
        if self._connected:
            return
        if self._ever_connected:
            self._reconnects += 1
        self._ever_connected = self._connected = True
        if self._down_logged:
            log.info("destination %s is back", self._name)
            self._down_logged = False
        else:
            log.debug("destination %s connected", self._name)

    def _mark_down(self, exc: SinkUnavailable) -> None:
        self._connected = False
        self._last_error, self._last_error_time = str(exc) or type(exc).__name__, time.time()
        if not self._down_logged:  # the summary: the destination's own text only at DEBUG
            log.warning("destination %s is down: %s", self._name, exc.summary or self._last_error)
            log.debug("destination %s: %s", self._name, self._last_error)
            self._down_logged = True
        else:
            log.debug("destination %s still down: %s", self._name, self._last_error)

    async def _measure(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._measured >= HEALTH_PERIOD_S:
            self._measured = now
            self._backlog = await self._outbox.backlog(self._name, self._routes)
            self._quarantined = len(await self._outbox.quarantined(self._name))

    async def _wait_out(self, delay: float) -> None:
        """Sleep the backoff, keeping the backlog figures fresh meanwhile."""
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            await self._measure()
            await asyncio.sleep(min(left, HEALTH_PERIOD_S))

    # -- delivery ----------------------------------------------------------------------------

    async def _pump(self, sink: Sink) -> None:
        window = max(1, sink.window)
        await self._measure(force=True)
        await self._send_released(sink)
        cursor = self._outbox.cursor(self._name)
        w = _Window(
            cursor,
            cursor,
            self._outbox.generation(self._name),
            linger=_linger(sink),
        )
        if isinstance(sink, LinkWatcher):
            w.link = asyncio.create_task(sink.link_lost(), name=f"sync:{self._name}:link")
        try:
            while True:
                now_gen = self._outbox.generation(self._name)
                if now_gen != w.generation:
                    await self._regenerate(sink, w, now_gen)
                    continue
                want = max(1, sink.max_batch) if w.linger > 0 else 1
                while w.has_room(window) and await self._fill(w, want):
                    if w.linger > 0 and self._lingering(sink, w):
                        break  # let the batch fill up (a file rolled by count or age)
                    self._dispatch(sink, w)
                await self._wait(sink, w, window)
        finally:
            waited = [*w.tasks, *([w.link] if w.link is not None else [])]
            for task in waited:
                task.cancel()
            await asyncio.gather(*waited, return_exceptions=True)

    async def _regenerate(self, sink: Sink, w: _Window, now_gen: Generation) -> None:
        """React to a release (re-send it first) or a rewind (drain, restart from the cursor)."""
        if now_gen.releases != w.generation.releases:
            await self._send_released(sink)
            w.generation = Generation(w.generation.rewinds, now_gen.releases)
        if now_gen.rewinds != w.generation.rewinds:
            if w.tasks:
                await self._wait(sink, w, 0)
                return  # drain the window before starting over
            cursor = self._outbox.cursor(self._name)
            w.cursor = w.read_to = cursor
            w.order.clear()
            w.buffered.clear()
        w.generation = now_gen

    async def _fill(self, w: _Window, want: int = 1) -> bool:
        """Buffer up to `want` envelopes (as far as committed); False when none are buffered."""
        while len(w.buffered) < want and w.read_to < self._outbox.last_seq:
            envelopes, scanned = await self._outbox.read(
                w.read_to, routes=self._routes, limit=self._page
            )
            w.read_to = scanned
            if envelopes:
                w.buffered.extend(envelopes)
                w.page_end = scanned
            elif w.buffered:  # the buffered batch's end covers the skipped stretch
                w.page_end = scanned
            else:  # nothing routed here in that stretch: the cursor may skip it
                w.order.append(_Batch((), scanned, done=True))
                self._advance(w)
        return bool(w.buffered)

    def _lingering(self, sink: Sink, w: _Window) -> bool:
        """A part-full batch younger than the sink's linger waits for more events."""
        return self._linger_left(sink, w) is not None

    def _linger_left(self, sink: Sink, w: _Window) -> float | None:
        linger = w.linger
        if linger <= 0 or not w.buffered or len(w.buffered) >= max(1, sink.max_batch):
            return None
        left = w.buffered[0].created + linger - time.time()
        return left if left > 0 else None

    def _dispatch(self, sink: Sink, w: _Window) -> None:
        take = min(max(1, sink.max_batch), len(w.buffered))
        envelopes = [w.buffered.popleft() for _ in range(take)]
        end = envelopes[-1].seq if w.buffered else max(w.page_end, envelopes[-1].seq)
        batch = _Batch(envelopes, end, sent=time.monotonic())
        w.order.append(batch)
        task = asyncio.create_task(sink.send(envelopes), name=f"sync:{self._name}:send")
        w.tasks[task] = batch

    async def _wait(self, sink: Sink, w: _Window, window: int) -> None:
        """Wait for a send to complete, or (window not full, caught up) for new events."""
        if not w.tasks:
            if not w.buffered:
                self._backlog = Backlog(0, 0, None)  # caught up: the cursor is at the last seq
            self._mark_up()  # the link is open and nothing failed
            await self._wait_idle(w, until=self._linger_left(sink, w))
            return
        waitables: set[asyncio.Future[None]] = set(w.tasks)
        if w.has_room(window) and not w.buffered:
            changed = self._outbox.beyond(w.read_to, dest=self._name, generation=w.generation)
            if changed is None:
                waitables.clear()  # new events already: complete what is done, then read them
            else:
                waitables.add(changed)
        if waitables:
            await asyncio.wait(
                waitables, timeout=HEALTH_PERIOD_S, return_when=asyncio.FIRST_COMPLETED
            )
        for task in [t for t in w.tasks if t.done()]:
            await self._complete(task, w.tasks.pop(task), w)
        await self._measure()

    async def _wait_idle(self, w: _Window, *, until: float | None = None) -> None:
        """Caught up (or lingering for `until` seconds): wait for new events.

        Notices a lost link meanwhile, so a quiet line's outage shows too. Waits on the
        outbox's shared change future and the connection's one link task: no task per wait.
        """
        changed = self._outbox.beyond(w.read_to, dest=self._name, generation=w.generation)
        if changed is None:
            return
        link = w.link
        waitables: set[asyncio.Future[Any]] = {changed}
        if link is not None:
            waitables.add(link)
        await asyncio.wait(waitables, timeout=until, return_when=asyncio.FIRST_COMPLETED)
        if link is not None and link.done():
            raise SinkUnavailable(f"{self._name}: {link.result()}")

    async def _complete(self, task: asyncio.Task[None], batch: _Batch, w: _Window) -> None:
        exc = task.exception()
        delivered: Sequence[Envelope] = batch.envelopes
        if isinstance(exc, SinkRejected):
            ids = set(exc.ids) if exc.ids is not None else {e.id for e in batch.envelopes}
            refused = [e for e in batch.envelopes if e.id in ids]
            delivered = [e for e in batch.envelopes if e.id not in ids]
            await self._quarantine(refused, exc)
        elif exc is not None:
            raise exc  # SinkUnavailable: reconnect; anything else is a bug
        self._mark_up()
        if self._on_ack is not None and batch.envelopes:
            self._on_ack(time.monotonic() - batch.sent)
        self._delivered += len(delivered)
        if delivered:
            self._last_delivered = time.time()
        self._failures = 0
        batch.done = True
        fault_point("publisher.before_cursor")
        self._advance(w)

    def _advance(self, w: _Window) -> None:
        moved = False
        while w.order and w.order[0].done:
            w.cursor = w.order.popleft().end
            moved = True
        # after a rewind the rewound cursor wins over acknowledgements still arriving
        if moved and self._outbox.generation(self._name).rewinds == w.generation.rewinds:
            self._outbox.advance(self._name, w.cursor)

    async def _quarantine(self, refused: Sequence[Envelope], exc: SinkRejected) -> None:
        """Park `refused` with the destination's reason; it is also the last error shown."""
        reason = str(exc) or "rejected"
        if refused:
            self._last_error, self._last_error_time = f"rejected: {reason}", time.time()
            log.warning(
                "destination %s quarantined %d event(s): %s",
                self._name,
                len(refused),
                exc.summary or "rejected",
            )
        await self._outbox.quarantine(self._name, refused, reason)
        await self._measure(force=True)

    async def _send_released(self, sink: Sink) -> None:
        """Re-send envelopes released from quarantine, ahead of new traffic."""
        released = await self._outbox.released(self._name)
        size = max(1, sink.max_batch)
        for start in range(0, len(released), size):
            chunk = released[start : start + size]
            refused: list[Envelope] = []
            try:
                await sink.send(chunk)
            except SinkRejected as exc:
                ids = set(exc.ids) if exc.ids is not None else {e.id for e in chunk}
                refused = [e for e in chunk if e.id in ids]
                await self._quarantine(refused, exc)
            self._mark_up()
            refused_seqs = {e.seq for e in refused}
            resent = [e.seq for e in chunk if e.seq not in refused_seqs]
            await self._outbox.settle(self._name, resent)
            self._delivered += len(resent)
        if released:
            await self._measure(force=True)


def _linger(sink: Sink) -> float:
    """How long the sink wants a part-full batch held back (0: send at once)."""
    return sink.linger_s if isinstance(sink, Lingering) else 0.0
