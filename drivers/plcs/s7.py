"""The Siemens S7 PLC driver (python-snap7): data-block values read into snapshots, written back.

`S7Plc` speaks S7 over ISO-on-TCP (port 102) with python-snap7's own pieces: its
`AsyncISOTCPConnection` (TPKT/COTP, asyncio streams), its `S7Protocol` codec (setup
communication, write jobs, answer parsing) and its address encoding. It does not use
`AsyncClient.read_multi_vars`, which in 3.3 sends one request per item, nor the threaded
`Client.read_multi_vars`, whose optimizer may pipeline several PDUs: every poll here is ONE
Read Var job carrying every watched value (`drivers.plcs.s7_plan`).

One job is what S7 offers, and what the CPU answers from its memory at one point (S7-300/400
at the scan cycle checkpoint or in time slices, S7-1500 in blocks up to 512 bytes: see the
CPU's "data consistency" figures). When the watched values do not fit one PDU (more than 20
ranges, or more bytes than the negotiated PDU carries, 240 bytes on most S7-300/1200), the
read is split into as few jobs as needed, sent back to back, and a WARNING says so at connect.
A split snapshot is still consistent for batches only if the PLC keeps quantity and parameters
steady while it holds the trigger (the handshake does exactly that) — so keep the batch
signals and parameters of one line in one small area of one DB.

Writes go one value per job: a bool as a BIT item (the CPU changes that bit only), numbers as
bytes; a string writes its actual-length byte and characters, after reading the PLC's
max-length byte to refuse a string that does not fit.

Errors: no answer or refused socket → `DeviceUnavailable`; the CPU refusing the service (PUT/GET
not allowed, protection level, password) → `DeviceRefused`; an item refused (no such DB, out of
range, access not allowed) → `AddressRejected` naming the address; a lost link or a late or
foreign answer → `DeviceDisconnected` / `DeviceProtocolError` (the link is dropped).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from snap7.async_client import AsyncISOTCPConnection
from snap7.datatypes import S7Area, S7WordLen
from snap7.error import S7ConnectionError, S7Error, S7ProtocolError
from snap7.s7protocol import S7Protocol

from drivers.base import (
    AddressInfo,
    AddressRejected,
    DeviceDisconnected,
    DeviceProtocolError,
    DeviceRefused,
    DeviceUnavailable,
    Value,
)
from drivers.plcs.polling import PollingPlc
from drivers.plcs.s7_address import S7Address, S7Type
from drivers.plcs.s7_plan import (
    READ_VAR,
    REFUSALS,
    SUCCESS,
    ReadPlan,
    header_error,
    item_error,
    plan_reads,
    read_items,
    read_request,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

log = logging.getLogger(__name__)

CONNECTION_TYPES = {"pg": 1, "op": 2, "basic": 3}
REQUESTED_PDU = 480
_MIN_PDU = 128


class S7Settings(BaseModel):
    """A Siemens S7 PLC (S7-300/400/1200/1500) reached over ISO-on-TCP."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: Literal["s7"] = Field("s7", description="Siemens S7 communication (PUT/GET)")
    host: str = Field(description="the CPU's (or CP's) host name or IP address")
    port: int = Field(102, ge=1, le=65535, description="ISO-on-TCP port")
    rack: int = Field(0, ge=0, le=7, description="rack of the CPU (0 on S7-1200/1500)")
    slot: int = Field(1, ge=0, le=31, description="slot of the CPU: 2 on S7-300, 1 on S7-1200/1500")
    connection_type: Literal["pg", "op", "basic"] = Field(
        "pg", description="connection resource to use: pg (programming device), op, or basic"
    )
    poll_ms: int = Field(100, ge=10, description="interval between two reads of the watched values")
    timeout_ms: int = Field(
        1000, ge=10, description="how long to wait for connecting and for each answer"
    )


class S7Plc(PollingPlc[S7Address]):
    """One S7 CPU: `async with plc:` connects, `snapshots()` streams its data-block values."""

    def __init__(
        self,
        id: str,  # noqa: A002 (the config calls it id)
        settings: S7Settings,
        *,
        watch: Mapping[str, S7Address] | None = None,
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
        self._timeout_s = settings.timeout_ms / 1000
        self._lock = asyncio.Lock()
        self._protocol = S7Protocol()
        self._conn: AsyncISOTCPConnection | None = None
        self._abandoned: list[AsyncISOTCPConnection] = []
        self._sequence = 0
        self.pdu_size = 0
        self._plan = ReadPlan([], [])

    @property
    def connected(self) -> bool:
        """Whether the link is open right now."""
        return self._conn is not None

    @property
    def requests_per_poll(self) -> int:
        """Read Var jobs one poll of the watched values takes (1 unless they do not fit)."""
        return len(self._plan.requests)

    def _where(self) -> str:
        s = self.settings
        return f"{s.host}:{s.port} rack {s.rack} slot {s.slot}"

    # --- connection ---------------------------------------------------------------------

    async def _open(self) -> None:
        await self._shut()
        s = self.settings
        tsap = (CONNECTION_TYPES[s.connection_type] << 8) | (s.rack << 5) | s.slot
        conn = AsyncISOTCPConnection(s.host, s.port, local_tsap=0x0100, remote_tsap=tsap)
        try:
            async with asyncio.timeout(self._timeout_s):
                await conn.connect(timeout=self._timeout_s)
        except asyncio.CancelledError:
            _drop(conn)  # no await: cancelled, the socket must still be closed
            raise
        except (S7Error, OSError, TimeoutError) as exc:
            await _close(conn)
            error = DeviceUnavailable(
                f"{self._id}: cannot connect to {self._where()}: {exc or 'no answer'}"
                " (check host, port, rack, slot and connection type)"
            )
            self.health.mark_disconnected(str(error))
            raise error from exc
        self._conn = conn
        try:
            request = self._protocol.build_setup_communication_request(1, 1, REQUESTED_PDU)
            response = await self._exchange("setup communication", request)
            negotiated = int((response.get("parameters") or {}).get("pdu_length", 0))
            self.pdu_size = max(_MIN_PDU, min(negotiated or 240, REQUESTED_PDU))
        except BaseException as exc:
            await self._shut()
            if isinstance(exc, DeviceProtocolError | DeviceDisconnected):
                error = DeviceUnavailable(f"{self._id}: {self._where()} refused the link: {exc}")
                self.health.mark_disconnected(str(error))
                raise error from exc
            raise
        self._plan = plan_reads(self.watch.values(), self.pdu_size)
        if self.requests_per_poll > 1:
            log.warning(
                "PLC %s: the watched values need %d Read Var jobs per poll (PDU %d bytes); "
                "keep them in one small area of one DB for a single-job snapshot",
                self._id,
                self.requests_per_poll,
                self.pdu_size,
            )
        self.health.mark_connected()

    async def _shut(self) -> None:
        conn, self._conn = self._conn, None
        abandoned, self._abandoned = self._abandoned, []
        for old in [*abandoned, *([conn] if conn is not None else [])]:
            await _close(old)

    # --- requests -----------------------------------------------------------------------

    def _next_sequence(self) -> int:
        self._sequence = self._sequence % 0xFFFF + 1
        return self._sequence

    async def _exchange(self, what: str, request: bytes) -> dict[str, Any]:
        """Send one S7 job and return its parsed answer; any link trouble drops the link."""
        async with self._lock:
            conn = self._conn
            if conn is None:
                raise DeviceDisconnected(f"{self._id}: not connected ({what})")
            expected = struct.unpack_from(">H", request, 4)[0]
            try:
                async with asyncio.timeout(self._timeout_s):
                    await conn.send_data(request)
                    raw = await conn.receive_data()
                response = self._protocol.parse_response(raw)
            except S7ProtocolError as exc:
                code = exc.error_code or 0
                if code in REFUSALS:
                    raise DeviceRefused(f"{self._id}: {what}: {header_error(code)}") from exc
                if code:
                    raise DeviceProtocolError(f"{self._id}: {what}: {header_error(code)}") from exc
                self._abandon()
                raise DeviceProtocolError(f"{self._id}: {what}: unusable answer: {exc}") from exc
            except (S7Error, OSError, TimeoutError) as exc:
                self._abandon()
                reason = "no answer" if isinstance(exc, TimeoutError) else str(exc)
                raise DeviceDisconnected(f"{self._id}: {what}: {reason}") from exc
            except asyncio.CancelledError:
                self._abandon()  # its answer may still come: never take it for the next one's
                raise
            if response.get("sequence") != expected:
                self._abandon()
                raise DeviceProtocolError(f"{self._id}: {what}: the answer is for another job")
            return response

    def _abandon(self) -> None:
        if self._conn is not None:
            self._abandoned.append(self._conn)
            self._conn = None

    async def read(self, addresses: Mapping[str, S7Address]) -> dict[str, Value]:
        """Read the named addresses, in one Read Var job where the PDU allows; all or nothing."""
        if self._conn is None:
            raise DeviceDisconnected(f"{self._id}: not connected (read)")
        return await self._read_planned(addresses, plan_reads(addresses.values(), self.pdu_size))

    async def _read_watched(self) -> dict[str, Value]:
        return await self._read_planned(self.watch, self._plan)

    async def _read_planned(
        self, addresses: Mapping[str, S7Address], plan: ReadPlan
    ) -> dict[str, Value]:
        ranges: dict[int, bytearray] = {n: bytearray() for n in range(len(plan.ranges))}
        for items in plan.requests:
            response = await self._exchange("read", read_request(items, self._next_sequence()))
            params = response.get("parameters") or {}
            if params.get("function_code") != READ_VAR or params.get("item_count") != len(items):
                self._abandon()
                raise DeviceProtocolError(f"{self._id}: read: the answer does not match the job")
            try:
                results = read_items(bytes(response.get("raw_data") or b""), items)
            except ValueError as exc:
                self._abandon()
                raise DeviceProtocolError(f"{self._id}: read: {exc}") from exc
            for item, result in zip(items, results, strict=True):
                if isinstance(result, int):
                    named = _first_in(addresses.values(), item.db, item.start, item.end)
                    message = f"{self._id}: read {named}: {item_error(result)}"
                    raise AddressRejected(message, address=named)
                ranges[item.range_no] += result
        values: dict[str, Value] = {}
        for name, address in addresses.items():
            number, offset = plan.locate(address)
            values[name] = address.decode(bytes(ranges[number][offset : offset + address.size]))
        return values

    async def write(self, address: S7Address, value: Value) -> None:
        """Write one value: a bool as one BIT item, anything else as bytes."""
        data = address.encode(value)
        if address.type is S7Type.BOOL:
            assert address.bit is not None
            start, word_len = address.offset * 8 + address.bit, S7WordLen.BIT
        elif address.type is S7Type.STRING:
            start, word_len, data = await self._string_write(address, data)
        else:
            start, word_len = address.offset, S7WordLen.BYTE
        request = self._protocol.build_write_request(S7Area.DB, address.db, start, word_len, data)
        response = await self._exchange(f"write {address}", request)
        code = (response.get("data") or {}).get("return_code", 0)
        if code != SUCCESS:
            message = f"{self._id}: write {address}: {item_error(int(code))}"
            raise AddressRejected(message, address=str(address))
        log.debug("%s: wrote %s = %r", self._id, address, value)

    async def _string_write(self, address: S7Address, data: bytes) -> tuple[int, S7WordLen, bytes]:
        """Check the PLC's max-length byte, then write the actual length and the characters."""
        header = S7Address(address.db, address.offset, S7Type.BYTE)
        plc_max = int((await self.read({"max": header}))["max"])
        if plc_max == 0:  # not initialised as a STRING: write the whole header
            return address.offset, S7WordLen.BYTE, data
        if data[1] > plc_max:
            message = f"{self._id}: {data[1]} characters do not fit {address} (STRING[{plc_max}])"
            raise AddressRejected(message, address=str(address))
        return address.offset + 1, S7WordLen.BYTE, data[1:]

    async def describe(self, address: S7Address) -> AddressInfo:
        """What the address holds: the address text says it all for S7."""
        return address.info


def _first_in(addresses: object, db: int, start: int, end: int) -> str:
    for address in addresses:  # type: ignore[attr-defined]
        if address.db == db and address.offset < end and address.end > start:
            return str(address)
    return f"DB{db}.DBB{start}"


async def _close(conn: AsyncISOTCPConnection) -> None:
    writer = getattr(conn, "_writer", None)  # snap7 forgets it when its disconnect is cut short
    try:
        async with asyncio.timeout(1.0):
            await conn.disconnect()
    except (TimeoutError, S7ConnectionError, OSError):
        log.debug("S7 link not closed cleanly")
    finally:
        if writer is not None:
            writer.close()  # a no-op when disconnect closed it; else the socket is not leaked


def _drop(conn: AsyncISOTCPConnection) -> None:
    """Close the link's socket without a word to the PLC (the caller cannot wait)."""
    writer = getattr(conn, "_writer", None)
    if writer is not None:
        writer.close()
