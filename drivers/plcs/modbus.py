"""The PLC driver: Modbus TCP and RTU links read into typed snapshots, and writes back.

`ModbusPlc` owns ONE pymodbus async client per link and serializes every request on it with an
`asyncio.Lock` (pymodbus mixes up the responses of concurrent calls). It reads named register
addresses (`drivers.plcs.registers`) with as few requests as the Modbus limits allow, writes coils
and registers, and offers `snapshots()`: a never-ending stream of complete, fresh snapshots of
the watched addresses that reconnects by itself with full-jitter backoff. pymodbus's own
reconnect is switched off (`reconnect_delay=0`) so that only one loop decides when to retry.

Failures are translated at the boundary into the driver family of `drivers.base`:
`ModbusException`/`ConnectionException`, `TimeoutError` and `OSError` become
`DeviceUnavailable` (cannot connect), `DeviceDisconnected` (the link went away) or
`DeviceProtocolError` (exception response, no answer, unusable answer).

The settings models are joined by the agent into a union discriminated on `protocol`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field
from pymodbus import ModbusException
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.framer import FramerType

from drivers.base import (
    AddressInfo,
    DeviceDisconnected,
    DeviceProtocolError,
    DeviceUnavailable,
    PlcSnapshot,
)
from drivers.plcs.polling import PollingPlc
from drivers.plcs.registers import ReadBlock, RegisterAddress, Table, Value, WordOrder, plan_reads

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from pymodbus.pdu import ModbusPDU

__all__ = [
    "ModbusPlc",
    "ModbusRtuSettings",
    "ModbusSettings",
    "ModbusTcpSettings",
    "PlcSnapshot",
]

log = logging.getLogger(__name__)


class _ModbusLinkSettings(BaseModel):
    """What every Modbus link has, whatever carries it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit: int = Field(1, ge=0, le=255, description="Modbus unit (slave/device) id of the PLC")
    poll_ms: int = Field(100, ge=10, description="interval between two reads of the watched values")
    timeout_ms: int = Field(
        1000, ge=10, description="how long to wait for connecting and for each answer"
    )
    word_order: WordOrder = Field(
        "big", description="order of the two words of 32-bit values: big = high word first"
    )


class ModbusTcpSettings(_ModbusLinkSettings):
    """A PLC reached over Modbus TCP."""

    protocol: Literal["modbus-tcp"] = Field("modbus-tcp", description="Modbus over TCP/IP")
    host: str = Field(description="the PLC's host name or IP address")
    port: int = Field(502, ge=1, le=65535, description="the PLC's Modbus TCP port")


class ModbusRtuSettings(_ModbusLinkSettings):
    """A PLC reached over Modbus RTU on a serial line."""

    protocol: Literal["modbus-rtu"] = Field("modbus-rtu", description="Modbus RTU over serial")
    port: str = Field(description="serial device, e.g. /dev/ttyS1 or /dev/serial/by-id/...")
    baudrate: int = Field(19200, gt=0, description="line speed in bits per second")
    parity: Literal["N", "E", "O"] = Field("E", description="parity: N(one), E(ven) or O(dd)")
    stopbits: Literal[1, 2] = Field(1, description="number of stop bits")
    bytesize: Literal[7, 8] = Field(8, description="data bits per character")


ModbusSettings = ModbusTcpSettings | ModbusRtuSettings


class ModbusPlc(PollingPlc[RegisterAddress]):
    """One PLC on one Modbus link: `async with plc:` connects, `snapshots()` streams its values."""

    def __init__(
        self,
        id: str,  # noqa: A002 (the config calls it id)
        settings: ModbusSettings,
        *,
        watch: Mapping[str, RegisterAddress] | None = None,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 10.0,
    ) -> None:
        super().__init__(
            id,
            watch=watch,
            poll_ms=settings.poll_ms,
            backoff_base_s=backoff_base_s,
            backoff_cap_s=backoff_cap_s,
        )
        self.settings = settings
        self._plan = plan_reads(self.watch.values())
        self._lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None

    @property
    def connected(self) -> bool:
        """Whether the link is open right now."""
        return self._client is not None and self._client.connected

    # --- connection ---------------------------------------------------------------------

    async def _open(self) -> None:
        await self._connect()

    async def _shut(self) -> None:
        self._close()

    def _where(self) -> str:
        s = self.settings
        if isinstance(s, ModbusTcpSettings):
            return f"{s.host}:{s.port} unit {s.unit}"
        return f"{s.port} unit {s.unit}"

    async def _connect(self) -> None:
        """Open the link; raise DeviceUnavailable when the PLC cannot be reached."""
        self._close()
        s = self.settings
        timeout = s.timeout_ms / 1000
        client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if isinstance(s, ModbusTcpSettings):
            client = AsyncModbusTcpClient(
                s.host, port=s.port, timeout=timeout, retries=0, reconnect_delay=0
            )
        else:
            client = AsyncModbusSerialClient(
                s.port,
                framer=FramerType.RTU,
                baudrate=s.baudrate,
                bytesize=s.bytesize,
                parity=s.parity,
                stopbits=s.stopbits,
                timeout=timeout,
                retries=0,
                reconnect_delay=0,
            )
        try:
            connected = await client.connect()
        except (ModbusException, OSError, TimeoutError) as exc:
            client.close()
            error = f"cannot connect to {self._where()}: {exc}"
            self.health.mark_disconnected(error)
            raise DeviceUnavailable(error) from exc
        if not connected:
            client.close()
            error = f"cannot connect to {self._where()}"
            self.health.mark_disconnected(error)
            raise DeviceUnavailable(error)
        self._client = client
        self.health.mark_connected()

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # --- requests -----------------------------------------------------------------------

    async def _request(
        self,
        what: str,
        call: Callable[[AsyncModbusTcpClient | AsyncModbusSerialClient], Awaitable[ModbusPDU]],
    ) -> ModbusPDU:
        """Run one request under the link's lock, translating every failure."""
        async with self._lock:
            client = self._client
            if client is None or not client.connected:
                raise DeviceDisconnected(f"{self._id}: not connected ({what})")
            try:
                response = await call(client)
            except (ModbusException, OSError, TimeoutError) as exc:
                if not client.connected:
                    raise DeviceDisconnected(f"{self._id}: link lost during {what}: {exc}") from exc
                # No usable answer: a late one may still come and be taken for the answer to
                # the next request (RTU frames carry no transaction id), so drop the link; the
                # next request reconnects.
                self._close()
                raise DeviceProtocolError(f"{self._id}: {what} failed: {exc}") from exc
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # pymodbus awaits asyncio.wait_for, which on Python 3.11 can swallow a
            # cancellation that arrives together with the answer: honour it here.
            raise asyncio.CancelledError
        if response.isError():
            code = getattr(response, "exception_code", "?")
            raise DeviceProtocolError(f"{self._id}: {what} answered with exception code {code}")
        return response

    async def _read_block(self, block: ReadBlock) -> list[int] | list[bool]:
        unit = self.settings.unit
        start, count = block.start, block.count
        what = f"read {block.table} {start}+{count}"
        match block.table:
            case Table.COIL:
                response = await self._request(
                    what, lambda c: c.read_coils(start, count=count, device_id=unit)
                )
            case Table.DISCRETE:
                response = await self._request(
                    what, lambda c: c.read_discrete_inputs(start, count=count, device_id=unit)
                )
            case Table.HOLDING:
                response = await self._request(
                    what, lambda c: c.read_holding_registers(start, count=count, device_id=unit)
                )
            case Table.INPUT:
                response = await self._request(
                    what, lambda c: c.read_input_registers(start, count=count, device_id=unit)
                )
        # bits come padded to whole bytes
        values: list[int] | list[bool] = (
            list(response.bits[:count]) if block.table.is_bits else list(response.registers)
        )
        if len(values) != count:
            raise DeviceProtocolError(f"{self._id}: {what} returned {len(values)} values")
        return values

    async def read(self, addresses: Mapping[str, RegisterAddress]) -> dict[str, Value]:
        """Read the named addresses with as few requests as possible; all or nothing."""
        return await self._read_planned(addresses, plan_reads(addresses.values()))

    async def _read_planned(
        self, addresses: Mapping[str, RegisterAddress], plan: list[ReadBlock]
    ) -> dict[str, Value]:
        raw = [(block, await self._read_block(block)) for block in plan]
        values: dict[str, Value] = {}
        for name, address in addresses.items():
            block, data = next((b, d) for b, d in raw if b.covers(address))
            values[name] = address.decode(
                block.values_for(address, data), word_order=self.settings.word_order
            )
        return values

    async def write(self, address: RegisterAddress, value: Value) -> None:
        """Write one value: a coil with write_coil, registers with write_registers."""
        unit = self.settings.unit
        what = f"write {address}"
        if address.table is Table.COIL:
            bit = bool(address.encode(value)[0])
            await self._request(what, lambda c: c.write_coil(address.address, bit, device_id=unit))
        elif address.table is Table.HOLDING:
            words = [int(w) for w in address.encode(value, word_order=self.settings.word_order)]
            await self._request(
                what, lambda c: c.write_registers(address.address, words, device_id=unit)
            )
        else:
            raise ValueError(f"{address}: {address.table} is read-only in Modbus")
        log.debug("%s: wrote %s = %r", self._id, address, value)

    async def _read_watched(self) -> dict[str, Value]:
        return await self._read_planned(self.watch, self._plan)

    async def describe(self, address: RegisterAddress) -> AddressInfo:
        """What the address holds: the address text says it all for Modbus."""
        return address.info
