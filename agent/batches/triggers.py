"""How a PLC says a batch is complete: `BatchTrigger` reads each poll and decides when to stamp.

The stamping itself (serial, trace code, the committed events) is the tracker's
(`agent.batches.tracker`); a trigger calls it through `complete` and records its own state
(handshake, counter, level) in the same transaction, under the tracker's keys (`batch:<plc>:…`).

Trigger kinds (`plcs.batch.trigger`), by what the trigger holds, whatever the protocol
(`drivers.base.AddressInfo`): a bool (a Modbus coil, an S7 DBX bit, a Boolean node, a BOOL tag)
is a handshake or an edge, an integer is a counter. OPC UA nodes and Logix tags say what they
hold only when the PLC is asked: their line sets `trigger_info` at connect, before the first
poll reaches the trigger (mode `unknown` until then).

- bool with `ack` — request/acknowledge handshake (safe): the PLC holds the request until it
  sees the ack. State `awaiting` is committed with the batch; a request found high and
  unacknowledged while `awaiting` is the SAME batch (the agent stopped between commit and ack):
  it is acknowledged again, never stamped twice. `awaiting` becomes `idle` (persisted) when the
  PLC drops its request, before the ack is cleared, so the PLC cannot raise the next request
  before the agent knows the last one ended.
- integer — a batch counter (safe): each step completes a batch; the counter
  value is committed with the batch, so a re-read or a restart does not count it twice. A
  counter that wraps (65535 → 0 for uint16) is a step; one that goes down otherwise (PLC
  reset) only re-baselines. A jump of more than one stamps one code and raises an alarm.
- bool without `ack` — a rising edge (unsafe: a pulse shorter than the poll period is missed).
  The level is persisted, so a trigger still high across a restart is not a new edge.

When a batch cannot be stamped (`complete` returns None: outbox full, no product, bad trace
code), the handshake is not acknowledged (the PLC holds its request) and the counter or level
is not recorded, so the same signal completes the batch on a later poll.

Fault point (`sync.faults`): `batch.before_ack` (the code is written, the ack not).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from drivers.base import ValueKind
from sync.faults import fault_point

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from agent.alarms import AlarmBoard
    from agent.config.plcs import BatchSignals
    from drivers.base import AddressInfo, Value
    from sync.base import Envelope

    Complete = Callable[[Mapping[str, Any], dict[str, str]], Awaitable[Envelope | None]]

log = logging.getLogger(__name__)


class TriggerState(Protocol):
    """What a trigger needs from the outbox: its committed state."""

    def state(self, key: str) -> str | None:
        """Committed application state."""
        ...

    async def put_state(self, values: Mapping[str, str]) -> None:
        """Commit application state without an event."""
        ...


class PlcLink(Protocol):
    """What batch tracking needs from the PLC driver."""

    async def write(self, address: Any, value: Value) -> None:
        """Write one value."""
        ...


class BatchTrigger:
    """The completion signal of one PLC: handshake, counter or edge, from its config."""

    def __init__(
        self,
        plc_id: str,
        signals: BatchSignals[Any],
        params: Mapping[str, Any],
        *,
        store: TriggerState,
        alarms: AlarmBoard,
        complete: Complete,
    ) -> None:
        self.plc_id = plc_id
        self.signals = signals
        self.params = params
        self._store = store
        self._alarms = alarms
        self._complete = complete
        self._key = f"batch:{plc_id}"
        self._level: bool | None = None
        # What the trigger holds: from the address text, or the PLC's answer at connect.
        self.trigger_info: AddressInfo | None = getattr(signals.trigger, "info", None)

    @property
    def watch(self) -> dict[str, Any]:
        """The PLC values one poll reads: trigger, ack, quantity and the process parameters."""
        names: dict[str, Any] = {"trigger": self.signals.trigger}
        if self.signals.ack is not None:
            names["ack"] = self.signals.ack
        if self.signals.quantity is not None:
            names["quantity"] = self.signals.quantity
        if self.signals.batch_id is not None:
            names["batch_id"] = self.signals.batch_id
        names.update({f"param:{k}": v for k, v in self.params.items()})
        return names

    @property
    def mode(self) -> str:
        """`handshake`, `counter` or `edge`; `unknown` until the PLC says what the trigger holds."""
        if self.trigger_info is None:
            return "unknown"
        if self.trigger_info.kind is ValueKind.INTEGER:
            return "counter"
        return "handshake" if self.signals.ack is not None else "edge"

    def _state(self, name: str) -> str | None:
        return self._store.state(f"{self._key}:{name}")

    def restore(self) -> None:
        """Load the last level an edge trigger committed."""
        level = self._state("level")
        self._level = None if level is None else level == "1"

    async def on_poll(self, values: Mapping[str, Any], plc: PlcLink, *, fresh_link: bool) -> None:
        """React to one complete poll of the PLC."""
        match self.mode:
            case "handshake":
                await self._handshake(values, plc)
            case "counter":
                await self._counter(values)
            case "edge":
                await self._edge(values, fresh_link=fresh_link)
            case _:
                pass  # the line describes the trigger before polls reach here

    async def _handshake(self, values: Mapping[str, Any], plc: PlcLink) -> None:
        assert self.signals.ack is not None
        request, acked = bool(values["trigger"]), bool(values["ack"])
        awaiting = self._state("handshake") == "awaiting"
        if request and not acked and awaiting and not self._same_batch(values):
            # The PLC rebooted while the agent was away and raises a NEW request: the stamped
            # batch was never acknowledged, but this one is another batch and gets its own code.
            log.warning("%s: pending request is another batch than the stamped one", self.plc_id)
            log.debug(  # the ids are the PLC's: at DEBUG only
                "%s: pending batch %s, stamped %s: stamping it",
                self.plc_id,
                values.get("batch_id"),
                self._state("awaiting_id"),
            )
            awaiting = False
        if request and not acked:
            if not awaiting:
                stamped = {f"{self._key}:handshake": "awaiting"}
                if "batch_id" in values:
                    stamped[f"{self._key}:awaiting_id"] = str(values["batch_id"])
                if await self._complete(values, stamped) is None:
                    return
            else:
                log.info(
                    "%s: request still high for batch already stamped; acknowledging again",
                    self.plc_id,
                )
            code = self._state("last_code")
            if self.signals.write_code_to is not None and code:
                await plc.write(self.signals.write_code_to, code)
            fault_point("batch.before_ack")
            await plc.write(self.signals.ack, value=True)
        elif not request:
            if awaiting:
                await self._store.put_state({f"{self._key}:handshake": "idle"})
            if acked:
                await plc.write(self.signals.ack, value=False)

    def _same_batch(self, values: Mapping[str, Any]) -> bool:
        """Whether a pending request is the batch already stamped (unknown without `batch_id`)."""
        stamped = self._state("awaiting_id")
        return "batch_id" not in values or stamped is None or stamped == str(values["batch_id"])

    async def _counter(self, values: Mapping[str, Any]) -> None:
        value = int(values["trigger"])
        last = self._state("counter")
        if last is not None and value < int(last) and self._wrapped(int(last), value):
            last = str(value - 1)  # 65535 → 0 on a uint16 counter is one step
        if last is None or value < int(last):
            if last is not None:
                log.warning(
                    "%s: batch counter went down %s → %d (PLC reset?); re-baselined",
                    self.plc_id,
                    last,
                    value,
                )
            await self._store.put_state({f"{self._key}:counter": str(value)})
        elif value > int(last):
            if value - int(last) > 1:
                self._alarms.raise_(
                    f"batch-gap:{self.plc_id}",
                    "batch",
                    f"{self.plc_id}: batch counter jumped {last} → {value}; one code stamped",
                    code="batch.counter_jump",
                    params={"plc": self.plc_id, "last": int(last), "value": value},
                )
            await self._complete(values, {f"{self._key}:counter": str(value)})

    def _wrapped(self, last: int, value: int) -> bool:
        """Whether `last` → `value` is one step of an unsigned counter rolling over."""
        return self.trigger_info is not None and self.trigger_info.wraps(last, value)

    async def _edge(self, values: Mapping[str, Any], *, fresh_link: bool) -> None:
        level = bool(values["trigger"])
        previous = self._level
        if previous is None or level == previous:
            if previous is None or fresh_link:
                self._level = level
                await self._store.put_state({f"{self._key}:level": "1" if level else "0"})
            return
        if level:
            if await self._complete(values, {f"{self._key}:level": "1"}) is None:
                return  # not stamped: the same edge is tried again on the next poll
        else:
            await self._store.put_state({f"{self._key}:level": "0"})
        self._level = level
