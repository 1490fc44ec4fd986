"""OpcUaPlc against asyncua's own server playing the filling line (drivers.simulators.opcua_plc)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from opcua_certs import AppCert, make_app_cert
from plc_support import streaming
from pydantic import ValidationError
from support import free_port, wait_until

from drivers.base import (
    AddressRejected,
    DeviceProtocolError,
    DeviceRefused,
    DeviceUnavailable,
    DriverError,
    ValueKind,
)
from drivers.plcs.opcua import NodeAddress, OpcUaPlc, OpcUaSettings
from drivers.simulators.opcua_plc import OpcUaLineSimulator, node_id

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

SIGNALS = ("trigger", "ack", "counter", "quantity", "fill_temp_c", "line_speed", "code", "batch_id")
WATCH = {name: NodeAddress.parse(node_id(name)) for name in SIGNALS if name != "code"}
CODE = NodeAddress.parse(node_id("code"))
ACK = WATCH["ack"]


def settings(sim: OpcUaLineSimulator, **overrides: object) -> OpcUaSettings:
    fields: dict[str, object] = {"endpoint": sim.url, "poll_ms": 20, "timeout_ms": 1000}
    fields.update(overrides)
    return OpcUaSettings.model_validate(fields)


def plc_for(sim: OpcUaLineSimulator, **overrides: object) -> OpcUaPlc:
    return OpcUaPlc(
        "capper",
        settings(sim, **overrides),
        watch=WATCH,
        backoff_base_s=0.05,
        backoff_cap_s=0.2,
    )


@pytest.fixture
async def sim() -> AsyncIterator[OpcUaLineSimulator]:
    async with OpcUaLineSimulator(auto=False, seed=1) as s:
        yield s


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, AppCert]:
    directory = tmp_path_factory.mktemp("opcua-pki")
    return {
        "server": make_app_cert(directory, "server", "urn:lineside:filler-sim", server=True),
        "agent": make_app_cert(directory, "agent", "urn:lineside:agent", server=False),
        "stranger": make_app_cert(directory, "stranger", "urn:lineside:other", server=False),
    }


def test_settings_model() -> None:
    plain = OpcUaSettings(endpoint="opc.tcp://10.0.0.21:4840")
    assert (plain.security_policy, plain.poll_ms, plain.username) == ("None", 100, None)
    with pytest.raises(ValidationError, match="needs cert_file, key_file, server_cert_file"):
        OpcUaSettings(endpoint="opc.tcp://h:4840", security_policy="Basic256Sha256")
    # the contract's example: a user name alone logs in with an empty password
    assert OpcUaSettings(endpoint="opc.tcp://h:4840", username="lineside").password_file is None
    with pytest.raises(ValidationError, match="password_file needs username"):
        OpcUaSettings(endpoint="opc.tcp://h:4840", password_file=Path("/etc/lineside/opcua.pw"))
    with pytest.raises(ValidationError, match="extra"):
        OpcUaSettings.model_validate({"endpoint": "opc.tcp://h", "host": "h"})
    with pytest.raises(ValidationError, match="opc"):
        OpcUaSettings(endpoint="http://h:4840")
    for name, field in OpcUaSettings.model_fields.items():
        assert field.description, f"OpcUaSettings.{name} has no description"


def test_node_ids_parse_as_asyncua_does() -> None:
    assert str(NodeAddress.parse(" ns=2;s=Capper.BatchDone ")) == "ns=2;s=Capper.BatchDone"
    assert NodeAddress.parse("ns=2;i=1001").node_id.Identifier == 1001
    assert NodeAddress.parse("i=2258").node_id.NamespaceIndex == 0
    assert NodeAddress.parse("ns=2;s=X").info is None  # the server says, at connect
    for bad in ("Capper.BatchDone", "ns=x;s=A", ""):
        with pytest.raises(ValueError, match="not an OPC UA node id"):
            NodeAddress.parse(bad)


async def test_one_read_call_gets_every_kind(sim: OpcUaLineSimulator) -> None:
    await sim.set_value("code", "LAST")
    async with plc_for(sim) as plc:
        before = sim.reads
        snapshot = await plc.poll()
        assert sim.reads == before + 1  # trigger, quantity and parameters: ONE Read call
        values = snapshot.values
        assert values["trigger"] is False
        assert values["counter"] == 0
        assert isinstance(values["fill_temp_c"], float)
        assert (await plc.read({"code": CODE}))["code"] == "LAST"
        kinds = {name: (await plc.describe(a)).kind for name, a in WATCH.items()}
        assert kinds["trigger"] is ValueKind.BOOL
        assert kinds["counter"] is ValueKind.INTEGER
        assert kinds["fill_temp_c"] is ValueKind.FLOAT
        counter = await plc.describe(WATCH["counter"])
        assert (counter.bits, counter.signed, counter.writable) == (16, False, False)
        code = await plc.describe(CODE)
        assert (code.kind, code.writable, code.length) == (ValueKind.STRING, True, None)
        assert (await plc.describe(ACK)).writable


async def test_trace_code_and_ack_writes(sim: OpcUaLineSimulator) -> None:
    async with plc_for(sim) as plc, streaming(plc) as stream:
        await sim.complete_batch(quantity=118)
        await stream.wait_for(lambda s: s.values["trigger"] is True)
        pending = stream.last(lambda s: s.values["trigger"] is True)
        assert (pending.values["quantity"], pending.values["counter"]) == (118, 1)
        await plc.write(CODE, "(01)09501101530003(10)L1(21)000007")
        await plc.write(ACK, value=True)
        await stream.wait_for(lambda s: s.values["trigger"] is False and s.values["ack"] is True)
        await plc.write(ACK, value=False)
        await stream.wait_for(lambda s: s.values["ack"] is False)
        assert sim.last_code == "(01)09501101530003(10)L1(21)000007"
        await sim.complete_batch(quantity=5)  # the PLC took the ack and is ready again
        await stream.wait_for(lambda s: s.values["counter"] == 2)


async def test_refused_writes_name_the_node(sim: OpcUaLineSimulator) -> None:
    async with plc_for(sim) as plc:
        with pytest.raises(AddressRejected, match=r"Filler\.Quantity is not writable") as info:
            await plc.write(WATCH["quantity"], 5)
        assert info.value.address == "ns=2;s=Filler.Quantity"
        with pytest.raises(TypeError, match="Boolean"):
            await plc.write(ACK, "yes")


async def test_a_node_that_does_not_exist_names_itself(sim: OpcUaLineSimulator) -> None:
    watch = {**WATCH, "param:oops": NodeAddress.parse("ns=2;s=Filler.NoSuchThing")}
    plc = OpcUaPlc("capper", settings(sim), watch=watch)
    with pytest.raises(AddressRejected, match=r"ns=2;s=Filler\.NoSuchThing: BadNodeIdUnknown"):
        await plc.__aenter__()
    assert not plc.connected
    async with plc_for(sim) as good:
        with pytest.raises(AddressRejected, match="BadNodeIdUnknown") as info:
            await good.read({"x": NodeAddress.parse("ns=7;i=4711")})
        assert info.value.address == "ns=7;i=4711"
        not_a_value = NodeAddress.parse("i=85")  # the Objects folder: no DataType
        with pytest.raises(AddressRejected, match="i=85"):
            await good.describe(not_a_value)


async def test_restart_reconnects_and_flags_it(sim: OpcUaLineSimulator) -> None:
    async with plc_for(sim) as plc, streaming(plc) as stream:
        await sim.complete_batch(quantity=50)
        await stream.wait_for(lambda s: s.values["counter"] == 1)
        await sim.restart(zero=True)
        await stream.wait_for(lambda s: s.after_reconnect, within=20)
        fresh = stream.last(lambda s: s.after_reconnect)
        assert (fresh.values["counter"], fresh.values["trigger"]) == (0, False)
        assert plc.health.connected
        assert plc.health.reconnects >= 1
        assert plc.health.last_error is not None


async def test_slow_answers_are_errors_and_recover(sim: OpcUaLineSimulator) -> None:
    async with plc_for(sim, timeout_ms=200) as plc:
        sim.delay_s = 0.5
        with pytest.raises(DriverError):
            await plc.poll()
        sim.delay_s = 0.0
    async with plc_for(sim, timeout_ms=200) as plc, streaming(plc) as stream:
        await stream.wait_for(lambda _: True)
        sim.delay_s = 0.5
        errors = plc.health.errors
        await wait_until(lambda: plc.health.errors > errors, what="slow poll recorded")
        sim.delay_s = 0.0
        await sim.set_value("quantity", 77)
        await stream.wait_for(lambda s: s.after_reconnect and s.values["quantity"] == 77)


async def test_nobody_listening_is_unavailable() -> None:
    plc = OpcUaPlc(
        "capper", OpcUaSettings(endpoint=f"opc.tcp://127.0.0.1:{free_port()}", timeout_ms=500)
    )
    with pytest.raises(DeviceUnavailable, match="cannot connect"):
        await plc.__aenter__()
    assert plc.health.last_error is not None
    assert not plc.health.connected


def secure(sim: OpcUaLineSimulator, certs: dict[str, AppCert], **overrides: object) -> OpcUaPlc:
    fields: dict[str, object] = {
        "security_policy": "Basic256Sha256",
        "security_mode": "SignAndEncrypt",
        "cert_file": certs["agent"].cert,
        "key_file": certs["agent"].key,
        "server_cert_file": certs["server"].cert,
    }
    fields.update(overrides)
    return OpcUaPlc("capper", settings(sim, **fields), watch=WATCH)


@pytest.fixture
async def secure_sim(
    certs: dict[str, AppCert], tmp_path: Path
) -> AsyncIterator[OpcUaLineSimulator]:
    (tmp_path / "password").write_text("s3cret\n")
    async with OpcUaLineSimulator(
        auto=False,
        certificate=certs["server"].cert,
        private_key=certs["server"].key,
        policies=["Basic256Sha256/SignAndEncrypt"],
        trusted=[certs["agent"].cert],
        users={"lineside": "s3cret"},
    ) as s:
        yield s


async def test_basic256sha256_with_user_and_password(
    secure_sim: OpcUaLineSimulator, certs: dict[str, AppCert], tmp_path: Path
) -> None:
    password = tmp_path / "password"
    async with secure(secure_sim, certs, username="lineside", password_file=password) as plc:
        await plc.write(CODE, "SECURE-1")
        assert (await plc.read({"code": CODE}))["code"] == "SECURE-1"
    (tmp_path / "wrong").write_text("guess")
    plc = secure(secure_sim, certs, username="lineside", password_file=tmp_path / "wrong")
    with pytest.raises(DeviceRefused, match="refused user 'lineside'"):
        await plc.__aenter__()


async def test_a_policy_not_offered_lists_what_is(
    secure_sim: OpcUaLineSimulator, certs: dict[str, AppCert], tmp_path: Path
) -> None:
    plain = OpcUaPlc("capper", settings(secure_sim), watch=WATCH)
    with pytest.raises(DeviceRefused, match="does not offer") as info:
        await plain.__aenter__()
    assert "it offers Basic256Sha256/SignAndEncrypt" in str(info.value)
    signing = secure(
        secure_sim,
        certs,
        security_mode="Sign",
        username="lineside",
        password_file=tmp_path / "password",
    )
    with pytest.raises(DeviceRefused, match="offers Basic256Sha256/SignAndEncrypt"):
        await signing.__aenter__()


async def test_a_rejected_certificate_says_so(
    secure_sim: OpcUaLineSimulator, certs: dict[str, AppCert], tmp_path: Path
) -> None:
    stranger = secure(
        secure_sim,
        certs,
        cert_file=certs["stranger"].cert,
        key_file=certs["stranger"].key,
        username="lineside",
        password_file=tmp_path / "password",
    )
    with pytest.raises(DeviceRefused, match="rejected this agent's certificate") as info:
        await stranger.__aenter__()
    assert "stranger.der" in str(info.value)
    assert stranger.health.last_error is not None


async def test_a_bad_status_on_one_poll_is_a_protocol_error(sim: OpcUaLineSimulator) -> None:
    watch = {"t": WATCH["trigger"]}
    async with OpcUaPlc("capper", settings(sim), watch=watch) as plc:
        assert isinstance(await plc.poll(), object)
        with pytest.raises(DeviceProtocolError):
            await plc.read({"gone": NodeAddress.parse("ns=2;s=Filler.Gone")})
