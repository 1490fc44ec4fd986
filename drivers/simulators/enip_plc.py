"""The filling line as a Logix PLC on cpppo's EtherNet/IP server, for tests and the demo.

`EnipLineSimulator` runs cpppo's `enip` server (its Logix message router, its own threads) in
this process on a free port (or the one given), with these tags, and runs
`drivers.simulators.line_program` against them::

    BatchDone      BOOL      trigger, raised by the PLC
    BatchAck       BOOL      ack, written by the agent
    BatchCount     DINT      batches completed (counter)
    BatchQty       DINT      produced quantity
    FillTempC      REAL      fill temperature in °C
    LineSpeed      INT       units per minute
    TraceCode      STRING    trace code written back (a CIP STRING, 0xD0: cpppo simulates no
                             Logix STRING structure)
    TraceCodeShort SSTRING   the same as a SHORT_STRING (0xDA)
    BatchId        DINT      the PLC's batch number

cpppo keeps its tags, options and CIP object directory in module globals, so one simulator runs
per process at a time, and each start resets that directory (cpppo's own `lookup_reset`): a
second `main()` in one process otherwise keeps serving the previous run's tag values.
Test controls besides the common ones: `set_delay()` (answer tag reads late).
Run standalone with `python -m drivers.simulators.enip_plc --port 44818`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from cpppo.dotdict import apidict, dotdict
from cpppo.server.enip import device
from cpppo.server.enip import main as enip_main

from drivers.simulators.line_program import SimulatedPlc, run_standalone

if TYPE_CHECKING:
    from typing import Unpack

    from drivers.base import Value
    from drivers.simulators.line_program import ProgramOptions

log = logging.getLogger(__name__)

TAGS: dict[str, tuple[str, str]] = {  # signal → (tag, cpppo type)
    "trigger": ("BatchDone", "BOOL"),
    "ack": ("BatchAck", "BOOL"),
    "counter": ("BatchCount", "DINT"),
    "quantity": ("BatchQty", "DINT"),
    "fill_temp_c": ("FillTempC", "REAL"),
    "line_speed": ("LineSpeed", "INT"),
    "code": ("TraceCode", "STRING"),
    "code_short": ("TraceCodeShort", "SSTRING"),
    "batch_id": ("BatchId", "DINT"),
}
_ZERO: dict[str, Value] = {"BOOL": False, "DINT": 0, "INT": 0, "REAL": 0.0}
_BUSY = threading.Lock()  # cpppo's globals: one simulator per process at a time
_START_TIMEOUT_S = 10.0


def tag(signal: str) -> str:
    """The tag name of a signal, as a config names it."""
    return TAGS[signal][0]


class EnipLineSimulator(SimulatedPlc):
    """A filling line's Logix PLC: `async with EnipLineSimulator() as sim:` then `sim.port`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **program: Unpack[ProgramOptions],
    ) -> None:
        super().__init__(counter_modulus=1 << 31, **program)
        self.host = host
        self.port = port
        self.delay_s = 0.0
        self._memory: dict[str, Value] = {}
        self._thread: threading.Thread | None = None
        self._control: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._owns_globals = False

    @property
    def running(self) -> bool:
        """Whether the server is up and answering."""
        return self._thread is not None

    def _attribute(self, signal: str) -> Any:
        return enip_main.tags[TAGS[signal][0]].attribute

    def value(self, signal: str) -> Value:
        """The current value of a tag, without EtherNet/IP."""
        if self._thread is not None:
            self._memory[signal] = self._attribute(signal)[0]
        return self._memory[signal]

    def _store(self, signal: str, value: Value) -> None:
        self._memory[signal] = value
        if self._thread is not None:
            self._attribute(signal)[0] = value

    def _zero(self) -> None:
        self._memory = {s: _ZERO.get(kind, "") for s, (_, kind) in TAGS.items()}
        self._memory["fill_temp_c"] = 4.0
        if self._thread is not None:
            for signal, value in self._memory.items():
                self._attribute(signal)[0] = value

    async def start(self) -> None:
        """Start answering (again) on the same port, with the tag values as they were left."""
        if self._thread is not None:
            return
        if not self._owns_globals:
            if not _BUSY.acquire(blocking=False):
                raise RuntimeError("cpppo runs one EtherNet/IP simulator per process at a time")
            self._owns_globals = True
        self._loop = asyncio.get_running_loop()
        owner = self

        program = threading.current_thread()

        class Attribute(device.Attribute):  # type: ignore[misc]  # cpppo is untyped
            """A tag that answers clients late on request and wakes the program on writes."""

            def __getitem__(self, key: Any) -> Any:
                if owner.delay_s > 0 and threading.current_thread() is not program:
                    time.sleep(owner.delay_s)  # a server thread: a slow PLC
                return super().__getitem__(key)

            def __setitem__(self, key: Any, value: Any) -> None:
                super().__setitem__(key, value)
                owner.notify_write()

        device.lookup_reset()  # else the router keeps the attributes of the previous run
        server = dotdict()
        server.control = apidict(timeout=1.0)
        argv = ["-a", f"{self.host}:{self.port}", "--no-udp", "--no-config"]
        argv += [f"{name}={kind}" for name, kind in TAGS.values()]
        thread = threading.Thread(
            target=enip_main.main,
            kwargs={"argv": argv, "server": server, "attribute_class": Attribute},
            name="enip-sim",
        )
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not server.control.get("address"):
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the EtherNet/IP simulator did not start on {self.port}")
            await asyncio.sleep(0.02)
        self.port = int(server.control["address"][1])
        self._thread, self._control = thread, server.control
        for signal, value in self._memory.items():
            self._attribute(signal)[0] = value
        log.info("EtherNet/IP PLC simulator answering on %s:%d", self.host, self.port)

    def set_delay(self, seconds: float) -> None:
        """Answer every read of a tag `seconds` late (0: at once)."""
        self.delay_s = seconds

    def notify_write(self) -> None:
        """A tag changed: run the program's next scan now (called from a server thread)."""
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self.wake)

    async def stop(self) -> None:
        """Stop answering and drop every client connection (tag values are kept)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        for signal in TAGS:
            self._memory[signal] = enip_main.tags[TAGS[signal][0]].attribute[0]
        self._control["done"] = True
        await asyncio.to_thread(thread.join, 10)
        log.info("EtherNet/IP PLC simulator stopped")

    async def __aexit__(self, *exc: object) -> None:
        try:
            await super().__aexit__(None, None, None)
        finally:
            if self._owns_globals:
                self._owns_globals = False
                _BUSY.release()


def main(argv: list[str] | None = None) -> None:
    """Run the simulator standalone until Ctrl-C."""
    run_standalone(
        argv,
        what="Logix",
        default_port=44818,
        make=lambda host, port, handshake: EnipLineSimulator(
            host=host, port=port, handshake=handshake
        ),
        banner=lambda sim: f"EtherNet/IP PLC simulator on {sim.host}:{sim.port}",
    )


if __name__ == "__main__":
    main()
