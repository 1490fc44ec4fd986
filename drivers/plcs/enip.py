"""The Allen-Bradley Logix PLC driver (EtherNet/IP, pylogix): tags read into snapshots and written.

`EnipPlc` reaches a ControlLogix/CompactLogix CPU (slot `slot` of its chassis) with pylogix's
connected messaging. Every poll is ONE Multiple Service Packet of Read Tag services, one per
watched tag, so trigger, quantity and parameters come from one request. When the tags do not
fit the connection size (about 4000 bytes with a large Forward Open, 500 without), they are
split into as few packets as needed and a WARNING says so at connect; such a snapshot is
consistent for batches only if the PLC holds the values steady while the trigger is high.

The type of each tag comes from the PLC (one Read Tag per watched tag at connect), and values
are decoded and encoded by that type (`drivers.plcs.enip_codec`): pylogix's own string handling is
wrong for CIP STRING and SHORT_STRING tags.

pylogix is blocking: its calls run on this driver's one worker thread, one at a time (an
asyncio lock), each bounded by the socket timeout. A caller that is cancelled does not wait for
the thread; the socket is shut down at once, which ends the blocked call, and the link is
opened afresh. Closing the driver stops the worker thread.

Errors: no answer or refused socket → `DeviceUnavailable`; a tag the PLC does not know (CIP
status 0x05 "path destination unknown") or cannot serve → `AddressRejected` naming the tag; a
lost link or an unusable reply → `DeviceDisconnected` / `DeviceProtocolError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, WithJsonSchema
from pylogix import PLC
from pylogix.lgx_response import Response

from drivers.base import (
    AddressInfo,
    AddressRejected,
    DeviceDisconnected,
    DeviceProtocolError,
    DeviceUnavailable,
    Value,
)
from drivers.plcs.enip_codec import TagType, decode, encode, split_reply
from drivers.plcs.polling import PollingPlc

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

log = logging.getLogger(__name__)

T = TypeVar("T")
_TAG = re.compile(
    r"^(Program:[A-Za-z_]\w*\.)?[A-Za-z_]\w*(\[\d+(,\d+){0,2}\])?"
    r"(\.[A-Za-z_]\w*(\[\d+(,\d+){0,2}\])?)*(\.\d{1,2})?$"
)
MAX_TAG_LENGTH = 200
_READ_TAG = 0x4C
_WRITE_TAG = 0x4D
_REPLY_OFFSET = 50  # where pylogix's connected reply carries the CIP reply's status byte + 2
_PACKET_MARGIN = 80  # encapsulation and multi-service overhead beyond our own bytes
_STRING_ESTIMATE = 255  # bytes a string tag's reply is planned for (a Logix STRING is 88)
_REFUSED = {0x04: "path segment error (not a tag name)", 0x05: "no such tag in the PLC"}


@dataclass(frozen=True, slots=True)
class TagAddress:
    """One Logix tag by name (`BatchDone`, `Program:Main.Count`, `Codes[3]`)."""

    name: str

    @classmethod
    def parse(cls, text: str) -> TagAddress:
        """Check a Logix tag name; raise ValueError when it cannot be one."""
        name = text.strip()
        if len(name) > MAX_TAG_LENGTH or not _TAG.match(name):
            msg = f"{text!r} is not a Logix tag name like 'BatchDone' or 'Program:Main.Count'"
            raise ValueError(msg)
        return cls(name)

    @property
    def info(self) -> AddressInfo | None:
        """Unknown until the PLC says (`EnipPlc.describe`)."""
        return None

    def __str__(self) -> str:
        return self.name


def _validate_tag(value: Any) -> TagAddress:
    if isinstance(value, TagAddress):
        return value
    if not isinstance(value, str):
        msg = f"a Logix tag is a name like 'BatchDone', not {value!r}"
        raise ValueError(msg)  # noqa: TRY004 (pydantic reports ValueError)
    return TagAddress.parse(value)


TagSpec = Annotated[
    TagAddress,
    PlainValidator(_validate_tag),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^[A-Za-z_:][\w:.\[\],]*$"}),
]
"""A `TagAddress` field in a pydantic model, written as the tag name in config files."""


class EnipSettings(BaseModel):
    """An Allen-Bradley Logix PLC reached over EtherNet/IP."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: Literal["enip"] = Field("enip", description="EtherNet/IP (CIP) to a Logix CPU")
    host: str = Field(description="the PLC's (or its Ethernet module's) host name or IP address")
    port: int = Field(44818, ge=1, le=65535, description="EtherNet/IP TCP port")
    slot: int = Field(0, ge=0, le=31, description="chassis slot of the CPU")
    poll_ms: int = Field(100, ge=10, description="interval between two reads of the watched values")
    timeout_ms: int = Field(
        1000, ge=10, description="how long to wait for connecting and for each answer"
    )


class EnipPlc(PollingPlc[TagAddress]):
    """One Logix PLC: `async with plc:` connects, `snapshots()` streams its tag values."""

    def __init__(
        self,
        id: str,  # noqa: A002 (the config calls it id)
        settings: EnipSettings,
        *,
        watch: Mapping[str, TagAddress] | None = None,
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
        self._plc: Any = None
        self._worker: ThreadPoolExecutor | None = None
        self._types: dict[str, TagType] = {}
        self._packets: list[list[TagAddress]] = []

    @property
    def connected(self) -> bool:
        """Whether the link is open right now."""
        return self._plc is not None

    @property
    def requests_per_poll(self) -> int:
        """Multiple Service Packets one poll of the watched tags takes (1 unless too many)."""
        return len(self._packets)

    def _where(self) -> str:
        s = self.settings
        return f"{s.host}:{s.port} slot {s.slot}"

    # --- the worker thread --------------------------------------------------------------

    async def _call(self, what: str, work: Callable[[Any], T]) -> T:
        """Run one pylogix call on the worker thread, one at a time, abandoning it if cancelled."""
        async with self._lock:
            plc, worker = self._plc, self._worker
            if plc is None or worker is None:
                raise DeviceDisconnected(f"{self._id}: not connected ({what})")
            future = asyncio.wrap_future(worker.submit(work, plc))
            try:
                async with asyncio.timeout(2 * self._timeout_s):
                    return await asyncio.shield(future)
            except TimeoutError as exc:
                self._abandon()
                raise DeviceDisconnected(f"{self._id}: {what}: no answer") from exc
            except asyncio.CancelledError:
                self._abandon()
                raise
            except (OSError, struct.error, IndexError, ValueError) as exc:
                self._abandon()  # pylogix lets socket and short-reply errors through
                raise DeviceDisconnected(
                    f"{self._id}: {what}: {exc or type(exc).__name__}"
                ) from exc

    def _abandon(self) -> Future[None] | None:
        """Drop the link now: shut its socket so a blocked call returns, retire the worker.

        Returns the worker's last job (closing the link), after which its thread ends.
        """
        plc, self._plc = self._plc, None
        worker, self._worker = self._worker, None
        if plc is not None:
            with contextlib.suppress(OSError, AttributeError):
                plc.conn.Socket.shutdown(socket.SHUT_RDWR)
        if worker is None:
            return None
        closed = worker.submit(_close_quietly, plc)
        worker.shutdown(wait=False, cancel_futures=False)
        return closed

    # --- connection ---------------------------------------------------------------------

    async def _open(self) -> None:
        await self._shut()
        s = self.settings
        self._plc = PLC(s.host, slot=s.slot, timeout=self._timeout_s, port=s.port)
        self._plc.conn.msg_socket.close()  # pylogix opens it for listening, which we never do
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"enip:{self._id}")
        try:
            status = await self._call("connect", lambda plc: plc.conn.connect())
        except DeviceDisconnected as exc:
            status = [False, exc]
        if not status[0]:
            await self._shut()
            error = DeviceUnavailable(f"{self._id}: cannot connect to {self._where()}: {status[1]}")
            self.health.mark_disconnected(str(error))
            raise error
        try:
            for tag in self.watch.values():
                await self.describe(tag)
        except BaseException:
            await self._shut()
            raise
        self._packets = self._plan(list(self.watch.values()))
        if len(self._packets) > 1:
            log.warning(
                "PLC %s: the watched tags need %d requests per poll; fewer or shorter tags fit one",
                self._id,
                len(self._packets),
            )
        self.health.mark_connected()

    async def _shut(self) -> None:
        closed = self._abandon()
        if closed is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3 * self._timeout_s):
                    await asyncio.wrap_future(closed)

    def _plan(self, tags: Sequence[TagAddress]) -> list[list[TagAddress]]:
        size = int(getattr(self._plc.conn, "ConnectionSize", None) or 504) - _PACKET_MARGIN
        packets: list[list[TagAddress]] = []
        asked = answered = size + 1
        for tag in tags:
            cost_asked = 8 + len(tag.name) + len(tag.name) % 2
            info = self._types[tag.name].info()
            # a CIP STRING may be 65535 long in theory; trace codes and parameters are short
            longest = min(info.length, _STRING_ESTIMATE) if info.length is not None else 4
            cost_answered = 14 + longest
            if asked + cost_asked > size or answered + cost_answered > size:
                packets.append([])
                asked = answered = 0
            packets[-1].append(tag)
            asked += cost_asked
            answered += cost_answered
        return packets

    # --- requests -----------------------------------------------------------------------

    async def describe(self, address: TagAddress) -> AddressInfo:
        """What the tag holds, from one Read Tag the first time it is asked."""
        if address.name not in self._types:
            segment = await self._request(f"read {address}", [address])
            status, tag_type, _ = _split(self._id, address, segment[0])
            if tag_type is None or status:
                raise _rejected(self._id, address, status)
            if not tag_type.supported:
                message = f"{self._id}: tag {address} is a {tag_type.name}; only BOOL, integers,"
                raise AddressRejected(f"{message} REAL/LREAL and strings", address=str(address))
            self._types[address.name] = tag_type
        return self._types[address.name].info()

    async def _request(self, what: str, tags: Sequence[TagAddress]) -> list[bytes]:
        """One Read Tag, or one Multiple Service Packet of Read Tags: the reply of each."""

        def work(plc: Any) -> tuple[int, bytes | None]:
            services = [
                struct.pack("<BB", _READ_TAG, len(ioi) // 2) + ioi + struct.pack("<H", 1)
                for ioi in (plc._build_ioi(t.name, None) for t in tags)  # noqa: SLF001
            ]
            if len(services) == 1:
                status, reply = plc.conn.send(services[0])
                return status, reply
            offsets, at = b"", 2 + 2 * len(services)
            for service in services:
                offsets += struct.pack("<H", at)
                at += len(service)
            header = plc._build_multi_service_header()  # noqa: SLF001
            request = header + struct.pack("<H", len(services)) + offsets + b"".join(services)
            status, reply = plc.conn.send(request)
            return status, reply

        _, reply = await self._call(what, work)
        if not reply or len(reply) < _REPLY_OFFSET - 2:
            self._abandon()
            raise DeviceDisconnected(f"{self._id}: {what}: the PLC closed the link")
        if len(tags) == 1:
            return [reply[_REPLY_OFFSET - 4 :]]
        return _split_multi(self._id, what, reply[_REPLY_OFFSET:], len(tags))

    async def read(self, addresses: Mapping[str, TagAddress]) -> dict[str, Value]:
        """Read the named tags with one Multiple Service Packet; all or nothing."""
        for tag in addresses.values():
            await self.describe(tag)
        return await self._read_packets(addresses, self._plan(list(addresses.values())))

    async def _read_watched(self) -> dict[str, Value]:
        return await self._read_packets(self.watch, self._packets)

    async def _read_packets(
        self, addresses: Mapping[str, TagAddress], packets: list[list[TagAddress]]
    ) -> dict[str, Value]:
        by_name: dict[str, Value] = {}
        for packet in packets:
            segments = await self._request("read", packet)
            for tag, segment in zip(packet, segments, strict=True):
                status, tag_type, data = _split(self._id, tag, segment)
                if tag_type is None or status:
                    raise _rejected(self._id, tag, status)
                try:
                    by_name[tag.name] = decode(tag_type, data)
                except (ValueError, IndexError, struct.error) as exc:
                    message = f"{self._id}: read {tag}: unusable {tag_type.name} value ({exc})"
                    raise DeviceProtocolError(message) from exc
        return {name: by_name[tag.name] for name, tag in addresses.items()}

    async def write(self, address: TagAddress, value: Value) -> None:
        """Write one tag in the type the PLC reports for it."""
        await self.describe(address)
        data = encode(self._types[address.name], value, str(address))

        def work(plc: Any) -> tuple[int, bytes | None]:
            ioi = plc._build_ioi(address.name, None)  # noqa: SLF001
            status, reply = plc.conn.send(
                struct.pack("<BB", _WRITE_TAG, len(ioi) // 2) + ioi + data
            )
            return status, reply

        status, reply = await self._call(f"write {address}", work)
        if not reply:
            self._abandon()
            raise DeviceDisconnected(f"{self._id}: write {address}: the PLC closed the link")
        if status:
            raise _rejected(self._id, address, status, what="write")
        log.debug("%s: wrote %s = %r", self._id, address, value)


def _split(plc: str, tag: TagAddress, segment: bytes) -> tuple[int, TagType | None, bytes]:
    try:
        return split_reply(segment)
    except ValueError as exc:
        raise DeviceProtocolError(f"{plc}: read {tag}: {exc}") from exc


def _split_multi(plc: str, what: str, data: bytes, count: int) -> list[bytes]:
    """The reply segments of a Multiple Service Packet answer."""
    try:
        found = struct.unpack_from("<H", data)[0]
        offsets = [struct.unpack_from("<H", data, 2 + 2 * i)[0] for i in range(found)]
    except struct.error as exc:
        raise DeviceProtocolError(f"{plc}: {what}: unusable reply") from exc
    if found != count or any(o > len(data) for o in offsets):
        raise DeviceProtocolError(f"{plc}: {what}: {found} replies to {count} services")
    bounds = [*offsets, len(data)]
    return [data[bounds[i] : bounds[i + 1]] for i in range(count)]


def _rejected(plc: str, tag: TagAddress, status: int, *, what: str = "read") -> AddressRejected:
    reason = _REFUSED.get(status) or Response.get_error_code(status)
    return AddressRejected(
        f"{plc}: {what} {tag}: {reason} (CIP status 0x{status:02X})", address=str(tag)
    )


def _close_quietly(plc: Any) -> None:
    if plc is None:
        return
    with contextlib.suppress(Exception):
        plc.conn.close()
