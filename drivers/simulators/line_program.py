"""The filling line's PLC program, shared by every PLC simulator of this package.

`LineProgram` is the program a real line's PLC runs, written once against named signals, and
a simulator's lifecycle: `async with Sim(...) as sim`, `stop()`/`start()`/`stopped()` (the PLC
goes away and comes back, memory kept), `restart(zero=True)` (a reboot), `complete_batch()`.
The Modbus simulator (`modbus_plc`) runs it over its register map; `SimulatedPlc` keeps the
memory by signal name (`value()`/`set_value()`) for the OPC UA, S7 and EtherNet/IP simulators
(`opcua_plc`, `s7_plc`, `enip_plc`), each next to its protocol library's own server.

Signals (the same line as the Modbus simulator, `drivers.simulators.modbus_plc`)::

    trigger       bool    batch complete, raised by the PLC
    ack           bool    acknowledge, written by the agent
    counter       int     batches completed (wraps like the PLC's integer)
    quantity      int     produced quantity of the current/last batch
    fill_temp_c   float   fill temperature, about 4.0 ± noise
    line_speed    int     units per minute, 0 while a batch waits
    code          str     trace code written back by the agent
    batch_id      int     the PLC's number of the current/last batch

Batch cycle: units are counted at `units_per_s`; at `batch_units` the PLC sets the quantity and
batch id, steps the counter and raises the trigger. With `handshake=True` it holds the trigger
until the agent sets ack, then drops it, and starts the next batch once the agent clears ack.
With `handshake=False` the trigger is a pulse of `pulse_ms`. With `auto=False` nothing is
counted: tests complete batches with `complete_batch()`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import logging
import random
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Self, TypedDict, TypeVar

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from types import TracebackType

    from drivers.base import Value

log = logging.getLogger(__name__)

SIGNALS = (
    "trigger",
    "ack",
    "counter",
    "quantity",
    "fill_temp_c",
    "line_speed",
    "code",
    "batch_id",
)
_TICK_S = 0.05
_P = TypeVar("_P", bound="LineProgram")


class _Phase(enum.Enum):
    COUNTING = "counting"
    WAIT_ACK = "waiting for ack"
    WAIT_ACK_CLEAR = "waiting for ack to clear"
    PULSE = "trigger pulse"
    IDLE = "idle"


class ProgramOptions(TypedDict, total=False):
    """How the simulated line runs: the keywords every simulator passes on to `LineProgram`."""

    batch_units: int
    units_per_s: float
    handshake: bool
    auto: bool
    pulse_ms: int
    seed: int | None


class LineProgram(ABC):
    """The line's program and a simulator's lifecycle, over abstract signal reads and writes.

    The Modbus simulator runs it over its register map; `SimulatedPlc` over named signals.
    """

    def __init__(
        self,
        *,
        counter_modulus: int,
        batch_units: int = 120,
        units_per_s: float = 20.0,
        handshake: bool = True,
        auto: bool = True,
        pulse_ms: int = 500,
        seed: int | None = None,
    ) -> None:
        self.batch_units = batch_units
        self.units_per_s = units_per_s
        self.handshake = handshake
        self.auto = auto
        self.pulse_ms = pulse_ms
        self._counter_modulus = counter_modulus
        self._random = random.Random(seed)  # noqa: S311 (noise, not security)
        self._line_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._phase = _Phase.COUNTING if auto else _Phase.IDLE
        self._units = 0.0
        self._pulse_left = 0.0

    # --- what a simulator supplies ------------------------------------------------------

    @abstractmethod
    def _read(self, signal: str) -> Value:
        """A signal's current value in the PLC memory (0 for a signal this PLC does not have)."""

    @abstractmethod
    async def _write(self, signal: str, value: Value) -> None:
        """Change a signal in the PLC memory as its program does (a signal it lacks: nothing)."""

    @abstractmethod
    def _zero(self) -> None:
        """Memory as after power-on: all zero (the temperature probe reads at once)."""

    @abstractmethod
    async def start(self) -> None:
        """Start answering (again), with the memory as it was left."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop answering and drop every client connection (memory is kept)."""

    @property
    @abstractmethod
    def running(self) -> bool:
        """Whether the server is up and answering."""

    # --- what tests look at -------------------------------------------------------------

    @property
    def batches_completed(self) -> int:
        """The batch counter."""
        return int(self._read("counter"))

    @property
    def last_code(self) -> str:
        """The trace code the agent wrote back."""
        return str(self._read("code"))

    def wake(self) -> None:
        """Run the program's next scan now (a client wrote something)."""
        self._wake.set()

    # --- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        self._line_task = asyncio.create_task(self._run_line(), name="plc-sim:line")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._line_task is not None:
            self._line_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._line_task
            self._line_task = None
        await self.stop()

    @contextlib.asynccontextmanager
    async def stopped(self) -> AsyncIterator[None]:
        """Keep the PLC away while the block runs."""
        await self.stop()
        try:
            yield
        finally:
            await self.start()

    async def restart(self, *, zero: bool = True) -> None:
        """Reboot the PLC on the same port; `zero` clears its memory and the batch in progress."""
        await self.stop()
        if zero:
            self._zero()
            self._units = 0.0
            self._phase = _Phase.COUNTING if self.auto else _Phase.IDLE
        await self.start()

    # --- the program --------------------------------------------------------------------

    async def complete_batch(self, quantity: int | None = None) -> None:
        """Complete the current batch now: quantity, batch id, counter step, trigger up."""
        if self._phase in (_Phase.WAIT_ACK, _Phase.WAIT_ACK_CLEAR, _Phase.PULSE):
            msg = f"the previous batch is not finished ({self._phase.value})"
            raise RuntimeError(msg)
        produced = int(self._units) if quantity is None else quantity
        await self._write("quantity", produced)
        await self._write("batch_id", int(self._read("batch_id")) + 1)
        await self._write("counter", (self.batches_completed + 1) % self._counter_modulus)
        await self._write("line_speed", 0)
        await self._write("trigger", value=True)
        self._units = 0.0
        if self.handshake:
            self._phase = _Phase.WAIT_ACK
        else:
            self._phase = _Phase.PULSE
            self._pulse_left = self.pulse_ms / 1000
        log.info("batch %d complete, %d units", self.batches_completed, produced)
        self._wake.set()

    async def _run_line(self) -> None:
        """The PLC's scan cycle: count units, run the handshake, wiggle the temperature."""
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_TICK_S):
                    await self._wake.wait()
            self._wake.clear()
            now = loop.time()
            elapsed, last = now - last, now
            await self._write("fill_temp_c", 4.0 + self._random.gauss(0, 0.05))
            await self._step(elapsed)

    async def _step(self, elapsed: float) -> None:
        ack = bool(self._read("ack"))
        if self._phase is _Phase.COUNTING:
            self._units = min(self._units + self.units_per_s * elapsed, float(self.batch_units))
            await self._write("quantity", int(self._units))
            await self._write("line_speed", round(self.units_per_s * 60))
            if self._units >= self.batch_units:
                await self.complete_batch(self.batch_units)
        elif self._phase is _Phase.WAIT_ACK and ack:
            await self._write("trigger", value=False)
            self._phase = _Phase.WAIT_ACK_CLEAR
        elif self._phase is _Phase.WAIT_ACK_CLEAR and not ack:
            await self._next_batch()
        elif self._phase is _Phase.PULSE:
            self._pulse_left -= elapsed
            if self._pulse_left <= 0:
                await self._write("trigger", value=False)
                await self._next_batch()

    async def _next_batch(self) -> None:
        self._units = 0.0
        if self.auto:
            self._phase = _Phase.COUNTING
            await self._write("quantity", 0)
        else:
            self._phase = _Phase.IDLE


class SimulatedPlc(LineProgram):
    """A filling-line PLC on some protocol's server, its memory by signal name.

    Subclasses own the server and the memory: `value`, `_store`, `_zero`, `start`, `stop`.
    """

    @abstractmethod
    def value(self, signal: str) -> Value:
        """The current value of a signal, from the PLC memory, without the protocol."""

    @abstractmethod
    def _store(self, signal: str, value: Value) -> None:
        """Change the PLC memory as its program does."""

    async def set_value(self, signal: str, value: Value) -> None:
        """Change the PLC memory as its program would."""
        self._store(signal, value)

    async def __aenter__(self) -> Self:
        self._zero()
        return await super().__aenter__()

    def _read(self, signal: str) -> Value:
        return self.value(signal)

    async def _write(self, signal: str, value: Value) -> None:
        await self.set_value(signal, value)


def run_standalone(
    argv: list[str] | None,
    *,
    what: str,
    default_port: int,
    make: Callable[[str, int, bool], _P],
    banner: Callable[[_P], str],
) -> None:
    """A simulator's `main`: `--host`, `--port`, `--no-handshake`; runs until Ctrl-C."""
    parser = argparse.ArgumentParser(description=f"Lineside filling-line {what} simulator")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=default_port, help="TCP port to listen on")
    parser.add_argument("--no-handshake", action="store_true", help="pulse the trigger instead")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def serve() -> None:
        async with make(args.host, args.port, not args.no_handshake) as sim:
            print(f"{banner(sim)}; Ctrl-C stops")  # noqa: T201
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
