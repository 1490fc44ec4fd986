"""The OPC UA PLC driver (asyncua): node values read into snapshots, and written back.

`OpcUaPlc` owns one asyncua `Client` per PLC: endpoint, security policy None or Basic256Sha256
with Sign / SignAndEncrypt (this agent's certificate and key, the server's certificate), and
optionally a user name with a password read from a file at every connect.

Why Read-polling and not a subscription: a subscription's monitored items sample and queue data
changes on the server and publish them coalesced per publishing interval; a value that goes up
and down between two samples is never reported, and a queue that overflows drops changes. A
short trigger pulse can be missed exactly as with a Modbus edge trigger, and the snapshot of
trigger + quantity + parameters would be assembled from notifications of different moments.
So every poll is ONE Read service call of the Value attribute of every watched node: the
server answers it from one moment, and the handshake and counter triggers stay safe.

The value kind of a node comes from the PLC: at connect, one Read of DataType, ValueRank and
UserAccessLevel of every watched node (`describe` does the same for any other node, e.g. the
write-back target). Scalar Boolean, integer (SByte..UInt64), Float/Double and String nodes can
be used; anything else is refused by name.

Failures are translated at the boundary: no answer or a refused socket → `DeviceUnavailable`; a
policy the server does not offer, a certificate it rejects, a user it refuses → `DeviceRefused`
(the message lists the policies the server offers, or says the certificate was rejected); a bad
status of one node → `AddressRejected` naming the node and the status (`BadNodeIdUnknown
(0x80340000)`); a lost link → `DeviceDisconnected`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path  # noqa: TC003 (pydantic needs it at run time)
from typing import TYPE_CHECKING, Literal

from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from drivers.base import (
    AddressInfo,
    AddressRejected,
    DeviceDisconnected,
    DeviceProtocolError,
    DeviceRefused,
    Value,
)
from drivers.plcs.opcua_errors import connect_error, status_text
from drivers.plcs.opcua_nodes import NodeAddress, NodeSpec, NodeType, coerce, convert, node_type
from drivers.plcs.polling import PollingPlc

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["NodeAddress", "NodeSpec", "OpcUaPlc", "OpcUaSettings"]

log = logging.getLogger(__name__)

MAX_PASSWORD_BYTES = 4096


class OpcUaSettings(BaseModel):
    """A PLC reached over OPC UA (client/server, binary over TCP)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: Literal["opcua"] = Field("opcua", description="OPC UA binary (opc.tcp)")
    endpoint: str = Field(
        pattern=r"^opc\.tcp://", description="the server's endpoint URL, opc.tcp://host:4840/path"
    )
    security_policy: Literal["None", "Basic256Sha256"] = Field(
        "None", description="None, or Basic256Sha256 with security_mode and the certificates"
    )
    security_mode: Literal["Sign", "SignAndEncrypt"] = Field(
        "SignAndEncrypt", description="message security with Basic256Sha256: Sign or SignAndEncrypt"
    )
    cert_file: Path | None = Field(
        None, description="this agent's application certificate (DER or PEM) for Basic256Sha256"
    )
    key_file: Path | None = Field(None, description="the private key (PEM) of cert_file")
    server_cert_file: Path | None = Field(
        None, description="the server's certificate (DER or PEM), trusted for Basic256Sha256"
    )
    username: str | None = Field(None, description="user name to log in with (else anonymous)")
    password_file: Path | None = Field(
        None,
        description="file holding the user's password (read at every connect; without it, the "
        "user logs in with an empty password)",
    )
    poll_ms: int = Field(100, ge=10, description="interval between two reads of the watched values")
    timeout_ms: int = Field(
        2000, ge=10, description="how long to wait for connecting and for each answer"
    )

    @model_validator(mode="after")
    def _complete(self) -> OpcUaSettings:
        if self.security_policy != "None":
            missing = [
                name
                for name in ("cert_file", "key_file", "server_cert_file")
                if getattr(self, name) is None
            ]
            if missing:
                msg = f"security_policy {self.security_policy} needs {', '.join(missing)}"
                raise ValueError(msg)
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs username (the user whose password it holds)")
        return self


class OpcUaPlc(PollingPlc[NodeAddress]):
    """One PLC on OPC UA: `async with plc:` connects, `snapshots()` streams its node values."""

    def __init__(
        self,
        id: str,  # noqa: A002 (the config calls it id)
        settings: OpcUaSettings,
        *,
        watch: Mapping[str, NodeAddress] | None = None,
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
        self._client: Client | None = None
        self._types: dict[ua.NodeId, NodeType] = {}

    @property
    def connected(self) -> bool:
        """Whether the session is open right now."""
        return self._client is not None

    def _where(self) -> str:
        return self.settings.endpoint

    # --- connection ---------------------------------------------------------------------

    async def _open(self) -> None:
        await self._shut()
        s = self.settings
        client = Client(s.endpoint, timeout=self._timeout_s, watchdog_intervall=60.0)
        client.name = client.description = f"Lineside agent ({self._id})"
        try:
            async with asyncio.timeout(3 * self._timeout_s):
                await self._configure(client)
                await client.connect()
        except (OSError, TimeoutError, ua.UaError, ValueError) as exc:
            client.disconnect_socket()
            error = await connect_error(self._id, s, exc, self._timeout_s)
            self.health.mark_disconnected(str(error))
            raise error from exc
        self._client = client
        try:
            self._types = await self._resolve(self.watch.values())
        except BaseException:
            await self._shut()
            raise
        self.health.mark_connected()

    async def _configure(self, client: Client) -> None:
        s = self.settings
        if s.security_policy == "Basic256Sha256":
            assert s.cert_file is not None
            assert s.key_file is not None
            assert s.server_cert_file is not None
            mode = getattr(ua.MessageSecurityMode, s.security_mode)
            await client.set_security(
                SecurityPolicyBasic256Sha256,
                certificate=str(s.cert_file),
                private_key=str(s.key_file),
                server_certificate=str(s.server_cert_file),
                mode=mode,
            )
            uri = _application_uri(client)
            if uri is not None:
                client.application_uri = uri
        if s.username is not None:
            client.set_user(s.username)
            if s.password_file is not None:
                client.set_password(_read_password(s.password_file))

    async def _shut(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await client.disconnect()
        except (OSError, TimeoutError, ua.UaError):
            log.debug("%s: session not closed cleanly", self._id)
        finally:
            client.disconnect_socket()

    # --- requests -----------------------------------------------------------------------

    async def _call(self, what: str, params: ua.ReadParameters) -> list[ua.DataValue]:
        async with self._lock:
            client = self._client
            if client is None:
                raise DeviceDisconnected(f"{self._id}: not connected ({what})")
            try:
                async with asyncio.timeout(self._timeout_s):
                    results: list[ua.DataValue] = await client.uaclient.read(params)
                    return results
            except ua.UaStatusCodeError as exc:
                raise DeviceProtocolError(
                    f"{self._id}: {what} failed: {status_text(exc.code)}"
                ) from exc
            except (OSError, TimeoutError, ua.UaError) as exc:
                raise DeviceDisconnected(f"{self._id}: {what}: {exc or 'no answer'}") from exc

    async def _resolve(self, addresses: Iterable[NodeAddress]) -> dict[ua.NodeId, NodeType]:
        """Ask the server what each node holds: DataType, ValueRank, UserAccessLevel, Value."""
        nodes = list(dict.fromkeys(a.node_id for a in addresses))
        texts = {a.node_id: a.text for a in addresses}
        attributes = (
            ua.AttributeIds.DataType,
            ua.AttributeIds.ValueRank,
            ua.AttributeIds.UserAccessLevel,
            ua.AttributeIds.Value,
        )
        params = ua.ReadParameters()
        for node in nodes:
            for attribute in attributes:
                params.NodesToRead.append(ua.ReadValueId(NodeId=node, AttributeId=attribute))
        if not nodes:
            return {}
        results = await self._call("read of the node types", params)
        if len(results) != len(params.NodesToRead):
            raise DeviceProtocolError(f"{self._id}: the server answered a short read")
        found: dict[ua.NodeId, NodeType] = {}
        for i, node in enumerate(nodes):
            data_type, rank, access, value = results[4 * i : 4 * i + 4]
            found[node] = node_type(texts[node], data_type, rank, access, value)
        return found

    async def describe(self, address: NodeAddress) -> AddressInfo:
        """What the node holds and whether this session may write it (asks the server once)."""
        if address.node_id not in self._types:
            self._types.update(await self._resolve([address]))
        return self._types[address.node_id].info

    async def read(self, addresses: Mapping[str, NodeAddress]) -> dict[str, Value]:
        """Read the named nodes in one Read service call; all or nothing."""
        unknown = [a for a in addresses.values() if a.node_id not in self._types]
        if unknown:
            self._types.update(await self._resolve(unknown))
        params = ua.ReadParameters()
        for address in addresses.values():
            params.NodesToRead.append(
                ua.ReadValueId(NodeId=address.node_id, AttributeId=ua.AttributeIds.Value)
            )
        results = await self._call("read", params) if addresses else []
        if len(results) != len(addresses):
            raise DeviceProtocolError(f"{self._id}: the server answered a short read")
        values: dict[str, Value] = {}
        for (name, address), result in zip(addresses.items(), results, strict=True):
            values[name] = self._value(address, result)
        return values

    def _value(self, address: NodeAddress, result: ua.DataValue) -> Value:
        code = result.StatusCode.value if result.StatusCode is not None else 0
        if not ua.StatusCode(code).is_good():
            message = f"{self._id}: read {address}: {status_text(code)}"
            raise AddressRejected(message, address=str(address))
        raw = result.Value.Value if result.Value is not None else None
        kind = self._types[address.node_id].info.kind
        try:
            return convert(kind, raw)
        except (TypeError, ValueError) as exc:
            message = f"{self._id}: read {address}: {exc}"
            raise AddressRejected(message, address=str(address)) from None

    async def _read_watched(self) -> dict[str, Value]:
        return await self.read(self.watch)

    async def write(self, address: NodeAddress, value: Value) -> None:
        """Write one node's Value in its own DataType; a bad status names node and status."""
        if address.node_id not in self._types:
            await self.describe(address)
        node_type = self._types[address.node_id]
        if not node_type.info.writable:
            message = f"{self._id}: {address} is not writable for this session"
            raise AddressRejected(message, address=str(address))
        variant = ua.Variant(coerce(node_type.info, value, str(address)), node_type.variant)
        params = ua.WriteParameters()
        params.NodesToWrite.append(
            ua.WriteValue(
                NodeId=address.node_id,
                AttributeId=ua.AttributeIds.Value,
                Value=ua.DataValue(variant),
            )
        )
        async with self._lock:
            client = self._client
            if client is None:
                raise DeviceDisconnected(f"{self._id}: not connected (write {address})")
            try:
                async with asyncio.timeout(self._timeout_s):
                    results = await client.uaclient.write(params)
            except ua.UaStatusCodeError as exc:
                message = f"{self._id}: write {address}: {status_text(exc.code)}"
                raise DeviceProtocolError(message) from exc
            except (OSError, TimeoutError, ua.UaError) as exc:
                message = f"{self._id}: write {address}: {exc or 'no answer'}"
                raise DeviceDisconnected(message) from exc
        code = results[0].value if results else ua.StatusCodes.BadUnexpectedError
        if not ua.StatusCode(code).is_good():
            message = f"{self._id}: write {address}: {status_text(code)}"
            raise AddressRejected(message, address=str(address))
        log.debug("%s: wrote %s = %r", self._id, address, value)


def _read_password(path: Path) -> str:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_PASSWORD_BYTES + 1)
    except OSError as exc:
        raise DeviceRefused(f"cannot read the password file {path}: {exc.strerror}") from exc
    if len(raw) > MAX_PASSWORD_BYTES:
        raise DeviceRefused(f"the password file {path} is longer than {MAX_PASSWORD_BYTES} bytes")
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


def _application_uri(client: Client) -> str | None:
    """The URI in this agent's certificate: OPC UA servers match it to the application URI."""
    from cryptography import x509  # noqa: PLC0415 (asyncua's dependency, needed only here)

    policy = client.security_policy
    cert = getattr(policy, "host_certificate", None)
    if cert is None:
        return None
    with contextlib.suppress(ValueError, x509.ExtensionNotFound):
        certificate = x509.load_der_x509_certificate(cert)
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
        if uris:
            return str(uris[0])
    return None
