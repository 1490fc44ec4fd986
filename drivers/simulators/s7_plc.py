"""The filling line as an S7 CPU on python-snap7's server, for tests and `lineside demo --plc s7`.

`S7LineSimulator` registers one data block in a snap7 `Server` (its own threads, a free port
or the one given) and runs `drivers.simulators.line_program` against it. DB10 (200 bytes)::

    DB10.DBX0.0            trigger, raised by the PLC
    DB10.DBX0.1            ack, written by the agent
    DB10.DBD2:dint         produced quantity
    DB10.DBW6:word         batches completed (counter, wraps at 65536)
    DB10.DBD8:real         fill temperature in °C
    DB10.DBW12:int         line speed in units/min
    DB10.DBD14:dint        the PLC's batch number
    DB10.DBB100:string:64  trace code written back by the agent (an S7 STRING[64])

python-snap7 3.3.0's server emulator reads and writes a BIT item as its whole byte (a bit write
of DBX0.1 = 1 stores 0x01 in byte 0, wiping bit 0) and writes only the first item of a
multi-item Write Var. A CPU does neither, and a test against such a PLC would pass with a
driver that a real line breaks, so `_CpuServer` answers Read Var and Write Var itself, as a
CPU does: a BIT item is one bit, every item of a job is served with its own return code
(0x0A no such DB, 0x05 out of range), and the rest of the protocol is snap7's.

Test controls besides the common ones: `faults.delay_s` (answer late), `faults.drop` (never
answer), `faults.refuse` (answer every read/write job with that header error, e.g. 0x8104 as an
S7-1200 without PUT/GET), `faults.item_error` (refuse every item with that return code);
`jobs` counts the Read Var jobs served. Run standalone with `python -m drivers.simulators.s7_plc`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from snap7.server import Server
from snap7.type import SrvArea

from drivers.plcs.s7_address import S7Address
from drivers.simulators.line_program import SimulatedPlc, run_standalone

if TYPE_CHECKING:
    from typing import Unpack

    from drivers.base import Value
    from drivers.simulators.line_program import ProgramOptions

log = logging.getLogger(__name__)

DB = 10
DB_SIZE = 200
ADDRESSES = {
    "trigger": S7Address.parse("DB10.DBX0.0"),
    "ack": S7Address.parse("DB10.DBX0.1"),
    "quantity": S7Address.parse("DB10.DBD2:dint"),
    "counter": S7Address.parse("DB10.DBW6:word"),
    "fill_temp_c": S7Address.parse("DB10.DBD8:real"),
    "line_speed": S7Address.parse("DB10.DBW12:int"),
    "batch_id": S7Address.parse("DB10.DBD14:dint"),
    "code": S7Address.parse("DB10.DBB100:string:64"),
}
_AREA_DB = 0x84
_BIT = 0x01
_READ, _WRITE = 0x04, 0x05
_SIZES = {0x01: 1, 0x02: 1, 0x03: 1, 0x04: 2, 0x05: 2, 0x06: 4, 0x07: 4, 0x08: 4}


@dataclass
class Faults:
    """Faults the CPU injects into its answers to read and write jobs; all off by default."""

    delay_s: float = 0.0
    drop: bool = False
    refuse: int | None = None  # header error class+code, e.g. 0x8104
    item_error: int | None = None  # item return code, e.g. 0x03

    def clear(self) -> None:
        """Switch every fault off."""
        self.delay_s, self.drop, self.refuse, self.item_error = 0.0, False, None, None


class _CpuServer(Server):
    """snap7's server, with Read Var and Write Var answered as a CPU answers them."""

    def __init__(self, memory: bytearray, lock: threading.Lock, owner: S7LineSimulator) -> None:
        super().__init__(log=False)
        self._cpu_memory = memory
        self._owner = owner
        self._sockets: set[socket.socket] = set()
        self._sockets_lock = threading.Lock()
        self.register_area(SrvArea.DB, DB, memory)
        self.area_locks[(self._db_area(), DB)] = lock

    @staticmethod
    def _db_area() -> Any:
        from snap7.datatypes import S7Area  # noqa: PLC0415 (the server's own key type)

        return S7Area.DB

    def _handle_client(self, client_socket: socket.socket, address: tuple[str, int]) -> None:
        with self._sockets_lock:
            self._sockets.add(client_socket)
        try:
            super()._handle_client(client_socket, address)
        finally:
            with self._sockets_lock:
                self._sockets.discard(client_socket)

    def drop_clients(self) -> None:
        """Cut every client connection, as a CPU going away does."""
        with self._sockets_lock:
            sockets = list(self._sockets)
        for client in sockets:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)

    def _process_request(self, request_data: bytes, client_address: tuple[str, int]) -> Any:
        function = request_data[10] if len(request_data) > 10 and request_data[1] == 1 else None  # noqa: PLR2004
        if function not in (_READ, _WRITE):
            return super()._process_request(request_data, client_address)
        faults = self._owner.faults
        if faults.drop:
            return None
        if faults.delay_s > 0:
            time.sleep(faults.delay_s)
        sequence = struct.unpack_from(">H", request_data, 4)[0]
        if faults.refuse is not None:
            return struct.pack(
                ">BBHHHHBB", 0x32, 0x02, 0, sequence, 0, 0, *faults.refuse.to_bytes(2)
            )
        try:
            if function == _READ:
                self._owner.jobs += 1
                return self._read_var(request_data, sequence)
            return self._write_var(request_data, sequence)
        except (IndexError, struct.error):
            return struct.pack(">BBHHHHBB", 0x32, 0x02, 0, sequence, 0, 0, 0x85, 0x00)

    def _specs(self, pdu: bytes) -> list[tuple[int, int, int, int, int]]:
        """(word length, count, db, area, bit address) of each item of a job."""
        count = pdu[11]
        specs = []
        for n in range(count):
            base = 12 + 12 * n
            _, _, _, word_len, amount, db, area = struct.unpack_from(">BBBBHHB", pdu, base)
            address = int.from_bytes(pdu[base + 9 : base + 12], "big")
            specs.append((word_len, amount, db, area, address))
        return specs

    def _check(self, area: int, db: int, start: int, size: int) -> int:
        if self._owner.faults.item_error is not None:
            return self._owner.faults.item_error
        if area != _AREA_DB or db != DB:
            return 0x0A
        if start + size > len(self._cpu_memory):
            return 0x05
        return 0xFF

    def _read_var(self, pdu: bytes, sequence: int) -> bytes:
        specs = self._specs(pdu)
        data = bytearray()
        lock = self.area_locks[(self._db_area(), DB)]
        for n, (word_len, amount, db, area, address) in enumerate(specs):
            bit = word_len == _BIT
            start, size = address >> 3, 1 if bit else amount * _SIZES.get(word_len, 1)
            code = self._check(area, db, start, size)
            if code != 0xFF:  # noqa: PLR2004
                data += struct.pack(">BBH", code, 0, 0)
                continue
            with lock:
                chunk = bytes(self._cpu_memory[start : start + size])
            if bit:
                chunk = bytes([chunk[0] >> (address & 7) & 1])
                data += struct.pack(">BBH", 0xFF, 0x03, 1) + chunk
            else:
                data += struct.pack(">BBH", 0xFF, 0x04, size * 8) + chunk
            if len(chunk) % 2 and n < len(specs) - 1:
                data += b"\x00"
        params = struct.pack(">BB", _READ, len(specs))
        header = struct.pack(">BBHHHHBB", 0x32, 0x03, 0, sequence, len(params), len(data), 0, 0)
        return header + params + bytes(data)

    def _write_var(self, pdu: bytes, sequence: int) -> bytes:
        specs = self._specs(pdu)
        offset = 10 + struct.unpack_from(">H", pdu, 6)[0]
        codes = bytearray()
        lock = self.area_locks[(self._db_area(), DB)]
        for n, (word_len, amount, db, area, address) in enumerate(specs):
            _, transport, length = struct.unpack_from(">BBH", pdu, offset)
            size = length if transport in (0x03, 0x07, 0x09) else length // 8
            value = pdu[offset + 4 : offset + 4 + size]
            offset += 4 + size + (size % 2 if n < len(specs) - 1 else 0)
            bit = word_len == _BIT
            start = address >> 3
            code = self._check(area, db, start, 1 if bit else amount * _SIZES.get(word_len, 1))
            if code == 0xFF:  # noqa: PLR2004
                with lock:
                    if bit:
                        mask = 1 << (address & 7)
                        old = self._cpu_memory[start]
                        self._cpu_memory[start] = old | mask if value[0] & 1 else old & ~mask
                    else:
                        self._cpu_memory[start : start + len(value)] = value
            codes.append(code)
        self._owner.notify_write()
        params = struct.pack(">BB", _WRITE, len(specs))
        header = struct.pack(">BBHHHHBB", 0x32, 0x03, 0, sequence, len(params), len(codes), 0, 0)
        return header + params + bytes(codes)


class S7LineSimulator(SimulatedPlc):
    """A filling line's S7 CPU: `async with S7LineSimulator() as sim:` then `sim.port`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **program: Unpack[ProgramOptions],
    ) -> None:
        super().__init__(counter_modulus=0x10000, **program)
        self.host = host
        self.port = port
        self.faults = Faults()
        self.jobs = 0
        self._memory = bytearray(DB_SIZE)
        self._lock = threading.Lock()
        self._server: _CpuServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def running(self) -> bool:
        """Whether the server is up and answering."""
        return self._server is not None

    def value(self, signal: str) -> Value:
        """The current value of a signal, from the DB, without S7."""
        address = ADDRESSES[signal]
        with self._lock:
            raw = bytes(self._memory[address.offset : address.end])
        return address.decode(raw)

    def _store(self, signal: str, value: Value) -> None:
        address = ADDRESSES[signal]
        data = address.encode(value)
        with self._lock:
            if address.bit is not None:
                mask = 1 << address.bit
                old = self._memory[address.offset]
                self._memory[address.offset] = old | mask if data[0] else old & ~mask
            else:
                self._memory[address.offset : address.offset + len(data)] = data

    def _zero(self) -> None:
        with self._lock:
            self._memory[:] = bytes(DB_SIZE)
        self._store("code", "")  # an S7 STRING[64]: the max-length byte is set
        self._store("fill_temp_c", 4.0)

    def notify_write(self) -> None:
        """A client wrote: run the program's next scan now (called from a server thread)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.wake)

    async def start(self) -> None:
        """Start answering (again) on the same port, with the memory as it was left."""
        if self._server is not None:
            return
        self._loop = asyncio.get_running_loop()
        server = _CpuServer(self._memory, self._lock, self)
        server.host = self.host
        await asyncio.to_thread(server.start, self.port)
        assert server.server_socket is not None
        self.port = int(server.server_socket.getsockname()[1])
        self._server = server
        log.info("S7 PLC simulator answering on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Stop answering and drop every client connection (memory is kept)."""
        server, self._server = self._server, None
        if server is not None:
            server.drop_clients()
            await asyncio.to_thread(server.stop)
            log.info("S7 PLC simulator stopped")


def main(argv: list[str] | None = None) -> None:
    """Run the simulator standalone until Ctrl-C."""
    run_standalone(
        argv,
        what="S7",
        default_port=1102,
        make=lambda host, port, handshake: S7LineSimulator(
            host=host, port=port, handshake=handshake
        ),
        banner=lambda sim: f"S7 PLC simulator on {sim.host}:{sim.port}, DB{DB}",
    )


if __name__ == "__main__":
    main()
