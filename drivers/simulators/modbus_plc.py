"""A simulated filling-line PLC on pymodbus's own server, for tests and `lineside demo`.

`FillingLineSimulator` runs a pymodbus Modbus TCP server (or an RTU server on a serial device)
inside the caller's event loop and plays a filling line that counts units and completes batches.

Register map (unit 1 by default; the demo config and the tests use exactly this)::

    coil 0              batch complete (trigger), raised by the PLC
    coil 1              acknowledge, written by the agent
    holding 10          batches completed counter                     uint16
    holding 100-101     produced quantity of the current/last batch   uint32, high word first
    holding 110-111     fill temperature in °C (about 4.0 ± noise)    float32, high word first
    holding 112         line speed in units/min                       uint16
    holding 200-231     trace code written back by the agent          string:64

Coils and discrete inputs 0..31 and holding and input registers 0..299 exist (all zero at
start); anything else answers with an illegal-address exception.

Batch cycle: units are counted at `units_per_s`; at `batch_units` the PLC sets the quantity,
steps the counter and raises coil 0. With `handshake=True` it holds coil 0 until the agent sets
coil 1, then drops coil 0, and starts the next batch (quantity from 0) once the agent clears
coil 1. With `handshake=False` coil 0 is a pulse of `pulse_ms` and the line goes on. With
`auto=False` nothing is counted: tests complete batches with `complete_batch()`.

Test controls: `stop()`/`start()`/`stopped()` (the PLC goes away and comes back, memory kept),
`restart(zero=True)` (a reboot: memory back to zero), and `faults` (Modbus exception responses,
late answers, no answers, garbage frames). `requests` counts the requests served per function
code. Run standalone with `python -m drivers.simulators.modbus_plc --port 5020`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.plcs.registers import RegisterAddress, Table, Value
from drivers.simulators.line_program import LineProgram, run_standalone

if TYPE_CHECKING:
    from typing import Unpack

    from pymodbus.pdu import ModbusPDU

    from drivers.simulators.line_program import ProgramOptions

log = logging.getLogger(__name__)

TRIGGER = RegisterAddress.parse("coil:0")
ACK = RegisterAddress.parse("coil:1")
COUNTER = RegisterAddress.parse("holding:10")
QUANTITY = RegisterAddress.parse("holding:100:uint32")
TEMPERATURE = RegisterAddress.parse("holding:110:float32")
LINE_SPEED = RegisterAddress.parse("holding:112:uint16")
CODE = RegisterAddress.parse("holding:200:string:64")
SIGNALS = {  # the line program's signals (`line_program`) on this register map
    "trigger": TRIGGER,
    "ack": ACK,
    "counter": COUNTER,
    "quantity": QUANTITY,
    "fill_temp_c": TEMPERATURE,
    "line_speed": LINE_SPEED,
    "code": CODE,
}

BIT_COUNT = 32
REGISTER_COUNT = 300
_FUNCTION_CODES = {  # (read, write) function codes per table
    Table.COIL: (1, 15),
    Table.DISCRETE: (2, None),
    Table.HOLDING: (3, 16),
    Table.INPUT: (4, None),
}
_WRITE_TABLES = {5: Table.COIL, 15: Table.COIL, 6: Table.HOLDING, 16: Table.HOLDING}
# Set while the simulator itself touches the datastore, so injected faults hit clients only.
_internal_access: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "plc_sim_internal", default=False
)


@dataclass
class Faults:
    """Faults the simulator injects into its answers to clients; all off by default."""

    exception_code: int | None = None  # answer every request with this Modbus exception
    delay_s: float = 0.0  # answer this late
    drop: bool = False  # do not answer at all (the client times out)
    garbage: bool = False  # answer with bytes that are no Modbus frame

    def clear(self) -> None:
        """Switch every fault off."""
        self.exception_code = None
        self.delay_s = 0.0
        self.drop = self.garbage = False


class FillingLineSimulator(LineProgram):
    """A filling line's PLC: `async with FillingLineSimulator(port=0) as sim:` then `sim.port`.

    The line's program is `line_program.LineProgram`'s, over the register map above (the map has
    no batch id: that signal reads 0 and is not written).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        serial_port: str | None = None,
        baudrate: int = 19200,
        parity: str = "E",
        unit: int = 1,
        **program: Unpack[ProgramOptions],
    ) -> None:
        super().__init__(counter_modulus=0x10000, **program)
        self.host = host
        self.port = port
        self.serial_port = serial_port
        self.baudrate = baudrate
        self.parity = parity
        self.unit = unit
        self.faults = Faults()
        self.requests: Counter[int] = Counter()  # served requests per function code
        self._memory = self._fresh_memory()
        self._server: ModbusTcpServer | ModbusSerialServer | None = None

    # --- what tests look at -------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the server is up and answering."""
        return self._server is not None

    def value(self, address: RegisterAddress) -> Value:
        """Return the current value at `address`, from the PLC memory, without Modbus."""
        return address.decode(self._memory.raw(address))

    async def set_value(self, address: RegisterAddress, value: Value) -> None:
        """Change the PLC memory as its program would (also for discrete and input tables)."""
        values = address.encode(value)
        self._memory.store(address.table, address.address, values)
        await self._push(address.table, address.address, values)

    def _read(self, signal: str) -> Value:
        address = SIGNALS.get(signal)
        return 0 if address is None else self.value(address)

    async def _write(self, signal: str, value: Value) -> None:
        address = SIGNALS.get(signal)
        if address is not None:
            await self.set_value(address, value)

    def _zero(self) -> None:
        self._memory = self._fresh_memory()

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start answering (again), with the memory as it was left."""
        if self._server is not None:
            return
        server: ModbusTcpServer | ModbusSerialServer
        if self.serial_port is not None:
            server = ModbusSerialServer(
                self._device(),
                framer=FramerType.RTU,
                port=self.serial_port,
                baudrate=self.baudrate,
                parity=self.parity,
                trace_packet=self._trace_packet,
                trace_pdu=self._trace_pdu,
            )
        else:
            server = ModbusTcpServer(
                self._device(),
                address=(self.host, self.port),
                trace_packet=self._trace_packet,
                trace_pdu=self._trace_pdu,
            )
        await server.serve_forever(background=True)
        if self.serial_port is None:
            self.port = int(server.transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        self._server = server
        log.info("PLC simulator answering on %s", self.serial_port or f"{self.host}:{self.port}")

    async def stop(self) -> None:
        """Stop answering and drop every client connection (memory is kept)."""
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
            log.info("PLC simulator stopped")

    @staticmethod
    def _fresh_memory() -> _Memory:
        """Memory as after power-on: all zero, but the temperature probe reads at once."""
        memory = _Memory()
        memory.store(TEMPERATURE.table, TEMPERATURE.address, TEMPERATURE.encode(4.0))
        return memory

    # --- pymodbus plumbing --------------------------------------------------------------

    def _device(self) -> SimDevice:
        """Build a fresh pymodbus device holding a copy of the simulator's memory."""
        memory = self._memory
        return SimDevice(
            id=self.unit,
            simdata=(
                [SimData(0, values=list(memory.coils), datatype=DataType.BITS)],
                [SimData(0, values=list(memory.discrete), datatype=DataType.BITS)],
                [SimData(0, values=list(memory.holding), datatype=DataType.REGISTERS)],
                [SimData(0, values=list(memory.input), datatype=DataType.REGISTERS)],
            ),
            action=self._on_request,
        )

    async def _push(self, table: Table, address: int, values: list[int] | list[bool]) -> None:
        """Write into the running server's datastore, bypassing the injected faults."""
        if self._server is None:
            return
        function_code = _FUNCTION_CODES[table][1] or _FUNCTION_CODES[table][0]
        token = _internal_access.set(True)
        try:
            await self._server.context.async_setValues(self.unit, function_code, address, values)
        finally:
            _internal_access.reset(token)

    async def _on_request(
        self,
        function_code: int,
        _start_address: int,
        address: int,
        _count: int,
        _registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """Inject faults and mirror client writes; pymodbus calls it before each access."""
        if _internal_access.get():
            return None
        if self.faults.exception_code is not None:
            return ExcCodes(self.faults.exception_code)
        if self.faults.delay_s > 0:
            await asyncio.sleep(self.faults.delay_s)
        if set_values is not None and (table := _WRITE_TABLES.get(function_code)) is not None:
            self._memory.store(table, address, set_values)
            self._wake.set()
        return None

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:  # noqa: FBT001 (pymodbus API)
        if not sending:
            self.requests[pdu.function_code] += 1
        return pdu

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:  # noqa: FBT001 (pymodbus API)
        if sending and self.faults.drop:
            return b""
        if sending and self.faults.garbage:
            return bytes(self._random.randrange(256) for _ in range(len(data)))
        return data


class _Memory:
    """The PLC's memory, the simulator's source of truth across server restarts."""

    def __init__(self) -> None:
        self.coils = [False] * BIT_COUNT
        self.discrete = [False] * BIT_COUNT
        self.holding = [0] * REGISTER_COUNT
        self.input = [0] * REGISTER_COUNT

    def _table(self, table: Table) -> list[bool] | list[int]:
        match table:
            case Table.COIL:
                return self.coils
            case Table.DISCRETE:
                return self.discrete
            case Table.HOLDING:
                return self.holding
            case Table.INPUT:
                return self.input

    def raw(self, address: RegisterAddress) -> list[bool] | list[int]:
        return self._table(address.table)[address.address : address.end]

    def store(self, table: Table, address: int, values: list[int] | list[bool]) -> None:
        target: list[Any] = self._table(table)
        target[address : address + len(values)] = values


def main(argv: list[str] | None = None) -> None:
    """Run the simulator standalone until Ctrl-C."""
    run_standalone(
        argv,
        what="Modbus",
        default_port=5020,
        make=lambda host, port, handshake: FillingLineSimulator(
            host=host, port=port, handshake=handshake
        ),
        banner=lambda sim: f"PLC simulator on {sim.host}:{sim.port}, unit {sim.unit}",
    )


if __name__ == "__main__":
    main()
