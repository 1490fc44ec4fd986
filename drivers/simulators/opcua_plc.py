"""The filling line as an OPC UA server (asyncua's own), for tests and `lineside demo --plc opcua`.

`OpcUaLineSimulator` runs an asyncua `Server` in the caller's event loop on a free port (or the
one given) and runs `drivers.simulators.line_program` against its address space. Nodes, in
the namespace `urn:lineside:filler-sim` (index 2)::

    ns=2;s=Filler.BatchDone     Boolean   trigger, raised by the PLC
    ns=2;s=Filler.BatchAck      Boolean   ack, written by the agent
    ns=2;s=Filler.BatchCount    UInt16    batches completed (counter)
    ns=2;s=Filler.Quantity      UInt32    produced quantity
    ns=2;s=Filler.FillTempC     Double    fill temperature in °C
    ns=2;s=Filler.LineSpeed     UInt16    units per minute
    ns=2;s=Filler.TraceCode     String    trace code written back by the agent
    ns=2;s=Filler.BatchId       UInt32    the PLC's batch number

Only BatchAck and TraceCode are writable by clients. Security: with `certificate`/`private_key`
the server offers None and Basic256Sha256 Sign / SignAndEncrypt (or only `policies`);
`trusted` limits the client certificates it accepts (others get BadCertificateUntrusted);
`users` (name → password) requires a user name login. Test controls besides the common ones:
`delay_s` (answer every client Read and Write this late) and `reads` (client Read service calls
served). Run standalone with `python -m drivers.simulators.opcua_plc --port 4840`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from asyncua import Server, ua
from asyncua.common.callback import CallbackType
from asyncua.crypto import uacrypto
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager

from drivers.simulators.line_program import SimulatedPlc, run_standalone

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path
    from typing import Unpack

    from asyncua.common.node import Node
    from asyncua.server.internal_server import InternalServer
    from cryptography import x509

    from drivers.base import Value
    from drivers.simulators.line_program import ProgramOptions

log = logging.getLogger(__name__)

NAMESPACE = "urn:lineside:filler-sim"
NODES: dict[str, tuple[str, ua.VariantType]] = {
    "trigger": ("Filler.BatchDone", ua.VariantType.Boolean),
    "ack": ("Filler.BatchAck", ua.VariantType.Boolean),
    "counter": ("Filler.BatchCount", ua.VariantType.UInt16),
    "quantity": ("Filler.Quantity", ua.VariantType.UInt32),
    "fill_temp_c": ("Filler.FillTempC", ua.VariantType.Double),
    "line_speed": ("Filler.LineSpeed", ua.VariantType.UInt16),
    "code": ("Filler.TraceCode", ua.VariantType.String),
    "batch_id": ("Filler.BatchId", ua.VariantType.UInt32),
}
WRITABLE = ("ack", "code")
_ZERO: dict[ua.VariantType, Value] = {
    ua.VariantType.Boolean: False,
    ua.VariantType.UInt16: 0,
    ua.VariantType.UInt32: 0,
    ua.VariantType.Double: 0.0,
    ua.VariantType.String: "",
}
POLICIES = {
    "None": ua.SecurityPolicyType.NoSecurity,
    "Basic256Sha256/Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256/SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}


def node_id(signal: str) -> str:
    """The node id text of a signal, as a config names it (`ns=2;s=Filler.BatchDone`)."""
    return f"ns=2;s={NODES[signal][0]}"


class _Users(UserManager):  # type: ignore[misc]  # asyncua is Any to mypy
    """User name + password logins; anything else is refused."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = dict(users)

    def get_user(
        self,
        iserver: InternalServer,  # noqa: ARG002 (asyncua's interface)
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,  # noqa: ARG002
    ) -> User | None:
        if username is not None and self._users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


class OpcUaLineSimulator(SimulatedPlc):
    """A filling line's PLC on OPC UA: `async with OpcUaLineSimulator() as sim:` then `sim.url`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        certificate: Path | None = None,
        private_key: Path | None = None,
        policies: Sequence[str] | None = None,
        trusted: Sequence[Path] | None = None,
        users: Mapping[str, str] | None = None,
        **program: Unpack[ProgramOptions],
    ) -> None:
        super().__init__(counter_modulus=0x10000, **program)
        self.host = host
        self.port = port
        self.certificate = certificate
        self.private_key = private_key
        self.policies = list(policies or (POLICIES if certificate else ["None"]))
        self.trusted = list(trusted or [])
        self.users = dict(users or {})
        self.delay_s = 0.0
        self.reads = 0
        self._memory: dict[str, Value] = {}
        self._server: Server | None = None
        self._nodes: dict[str, Node] = {}

    @property
    def url(self) -> str:
        """The endpoint URL clients connect to."""
        return f"opc.tcp://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server is up and answering."""
        return self._server is not None

    def value(self, signal: str) -> Value:
        """The current value of a signal (node), without OPC UA."""
        if self._server is not None:
            datavalue = self._server.read_attribute_value(self._nodes[signal].nodeid)
            if datavalue.Value is not None:
                self._memory[signal] = datavalue.Value.Value
        return self._memory[signal]

    def _store(self, signal: str, value: Value) -> None:
        self._memory[signal] = value

    async def set_value(self, signal: str, value: Value) -> None:
        """Change a node's value as the PLC program would (writable or not)."""
        self._store(signal, value)
        if self._server is not None:
            variant = ua.Variant(value, NODES[signal][1])
            await self._server.write_attribute_value(
                self._nodes[signal].nodeid, ua.DataValue(variant)
            )

    def _zero(self) -> None:
        self._memory = {signal: _ZERO[kind] for signal, (_, kind) in NODES.items()}
        self._memory["fill_temp_c"] = 4.0

    async def start(self) -> None:
        """Start answering (again) on the same port, with the node values as they were left."""
        if self._server is not None:
            return
        users = _Users(self.users) if self.users else None
        server = Server(user_manager=users)
        await server.init()
        server.set_endpoint(f"opc.tcp://{self.host}:{self.port}/")
        server.set_server_name("Lineside filling-line simulator")
        server.set_security_policy([POLICIES[p] for p in self.policies])
        if self.users:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        if self.certificate is not None and self.private_key is not None:
            await server.load_certificate(self.certificate)
            await server.load_private_key(self.private_key)
        if self.trusted:
            trusted = [await uacrypto.load_certificate(path) for path in self.trusted]
            server.set_certificate_validator(_only(trusted))
        namespace = await server.register_namespace(NAMESPACE)
        filler = await server.nodes.objects.add_object(namespace, "Filler")
        for signal, (name, kind) in NODES.items():
            node = await filler.add_variable(
                ua.NodeId(name, namespace), name, ua.Variant(self._memory[signal], kind)
            )
            if signal in WRITABLE:
                await node.set_writable()
            self._nodes[signal] = node
        server.subscribe_server_callback(CallbackType.PreRead, self._before_read)
        server.subscribe_server_callback(CallbackType.PreWrite, self._before_write)
        server.subscribe_server_callback(CallbackType.PostWrite, self._on_write)
        await server.start()
        assert server.bserver is not None
        self.port = int(server.bserver.port or self.port)
        self._server = server
        log.info("OPC UA PLC simulator answering on %s", self.url)

    async def stop(self) -> None:
        """Stop answering and drop every client connection (node values are kept)."""
        server, self._server = self._server, None
        if server is not None:
            for signal, node in self._nodes.items():
                datavalue = server.read_attribute_value(node.nodeid)
                if datavalue.Value is not None:
                    self._memory[signal] = datavalue.Value.Value
            await server.stop()
            log.info("OPC UA PLC simulator stopped")

    async def _before_read(self, event: Any, _dispatcher: object) -> None:
        if getattr(event, "is_external", False):
            self.reads += 1
            if self.delay_s > 0:
                await asyncio.sleep(self.delay_s)

    async def _before_write(self, event: Any, _dispatcher: object) -> None:
        if getattr(event, "is_external", False) and self.delay_s > 0:
            await asyncio.sleep(self.delay_s)

    def _on_write(self, *_: object) -> None:
        self.wake()


def _only(trusted: list[x509.Certificate]) -> Any:
    """A certificate validator accepting exactly the given client certificates."""
    allowed = {uacrypto.der_from_x509(cert) for cert in trusted}

    async def validate(certificate: x509.Certificate, _app: ua.ApplicationDescription) -> None:
        if uacrypto.der_from_x509(certificate) not in allowed:
            raise ua.uaerrors.BadCertificateUntrusted

    return validate


def main(argv: list[str] | None = None) -> None:
    """Run the simulator standalone until Ctrl-C."""
    run_standalone(
        argv,
        what="OPC UA",
        default_port=4840,
        make=lambda host, port, handshake: OpcUaLineSimulator(
            host=host, port=port, handshake=handshake
        ),
        banner=lambda sim: f"OPC UA PLC simulator on {sim.url}",
    )


if __name__ == "__main__":
    main()
