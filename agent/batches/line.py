r"""One PLC and what its signals mean: its link (any protocol) feeding the batch tracker.

The link is the driver of the PLC's `protocol` (`agent.config.plc_links`). Each complete poll
of the PLC goes to the tracker of its line; writes (code write-back, handshake ack) go back
over the same link, serialized by the driver. A PLC without `[plcs.batch]` is no line: it is
only watched (health, parameters on the status page).

PLC string registers arrive as the driver decoded them (drivers stay faithful readers and
cannot know the agent's rule). They are measurements, not instructions: refusing one would
leave a batch unstamped, so here, where they enter the agent, every character the text rule
forbids is escaped (`agent.text.shown`: ESC becomes `\x1b`, U+202E `\u202e`) before the value
reaches an event, the batch state or the status page.

Addresses whose type only the PLC knows (OPC UA nodes, Logix tags) are asked after the first
good poll: the trigger's type decides the mode (bool: handshake or edge; integer: counter), and
an ack, code target or trigger of the wrong type is refused by name (on the status page and in
the log) and nothing is stamped until it is fixed; they are asked again after each reconnect.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from agent.batches.tracker import BatchTracker
from agent.config.plc_links import open_plc
from agent.config.plcs import signal_problem
from agent.text import shown
from drivers.base import DriverError

if TYPE_CHECKING:
    import asyncio

    from agent.alarms import AlarmBoard
    from agent.batches.shifts import ShiftCalendar
    from agent.batches.tracker import BatchStore
    from agent.config.line import LineSection
    from agent.config.plcs import AnyPlcConfig
    from agent.events import EventFactory
    from drivers.base import DeviceHealth

log = logging.getLogger(__name__)


class Line:
    """A PLC link and, when it has batch signals, the batch tracker of its line."""

    def __init__(
        self,
        config: AnyPlcConfig,
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
        # A PLC with batch signals is a line, with its own product settings over [line]; one
        # without is only watched, and has no tracker.
        self.tracker = (
            BatchTracker(
                config,
                line.merged(config.line),
                factory=factory,
                store=store,
                alarms=alarms,
                timezone=timezone,
                shifts=shifts,
                serial_lock=serial_lock,
            )
            if config.batch is not None
            else None
        )
        watch = self.tracker.watch if self.tracker is not None else dict(config.params)
        self.plc = open_plc(config, watch)
        self.signal_error: str | None = None  # a signal of the wrong type, by the PLC's word
        self._described = False
        self.last_values: dict[str, object] = {}

    @property
    def health(self) -> DeviceHealth:
        """The PLC link's health."""
        return self.plc.health

    @property
    def mode(self) -> str:
        """How batches are signalled (`handshake`, `counter`, `edge`), or `watch`."""
        return self.tracker.mode if self.tracker is not None else "watch"

    async def run(self) -> None:
        """Poll for ever (the driver reconnects by itself) and feed the tracker."""
        # Outside `async with`: the stream opens the link itself, and a PLC that cannot be
        # opened (down, or refusing an address at connect) is retried with the driver's
        # backoff, its error in the link's health for the status page.
        async for snapshot in self.plc.snapshots():
            values: dict[str, object] = {
                k: shown(v) if isinstance(v, str) else v for k, v in snapshot.values.items()
            }
            self.last_values = values
            if self.tracker is not None:
                try:
                    if snapshot.after_reconnect or not self._described:
                        await self._describe(self.tracker)
                    if self.signal_error is not None:
                        continue
                    await self.tracker.on_poll(
                        values, self.plc, fresh_link=snapshot.after_reconnect
                    )
                except DriverError as exc:
                    # A write (trace code, ack) failed. The batch state is committed, so
                    # the next poll carries on from it and the driver reconnects by itself;
                    # left to the supervisor, link trouble grew its backoff to 30 s.
                    self.plc.health.record_error(str(exc))
                    log.warning(
                        "PLC %s: write or describe failed, retried from the next poll: %s",
                        self.config.id,
                        exc,
                    )

    async def _describe(self, tracker: BatchTracker) -> None:
        """Ask the PLC what each batch signal holds; refuse one of the wrong type by name."""
        signals = tracker.trigger.signals
        problems = []
        for role in ("trigger", "ack", "write_code_to", "quantity", "batch_id"):
            address = getattr(signals, role)
            if address is None:
                continue
            info = await self.plc.describe(address)
            if role == "trigger":
                tracker.trigger.trigger_info = info
            if (problem := signal_problem(role, info)) is not None:
                problems.append(f"plcs.batch.{role} {address} {problem}")
        self._described = True
        error = "; ".join(problems) or None
        if error is not None and error != self.signal_error:
            self.plc.health.record_error(error)
            log.error("PLC %s: %s; no batch is stamped until it is fixed", self.config.id, error)
        self.signal_error = error
