"""The protocol-neutral PLC contract: address kinds, the shared backoff, every driver fits `Plc`."""

from __future__ import annotations

import random

import pytest

from drivers.backoff import Backoff, full_jitter
from drivers.base import AddressInfo, Plc, ValueKind
from drivers.plcs.enip import EnipPlc, EnipSettings, TagAddress
from drivers.plcs.modbus import ModbusPlc, ModbusTcpSettings
from drivers.plcs.opcua import NodeAddress, OpcUaPlc, OpcUaSettings
from drivers.plcs.registers import RegisterAddress
from drivers.plcs.s7 import S7Plc, S7Settings
from drivers.plcs.s7_address import S7Address


@pytest.mark.parametrize(
    ("text", "kind", "writable", "bits", "signed", "length"),
    [
        ("coil:0", ValueKind.BOOL, True, None, False, None),
        ("discrete:0", ValueKind.BOOL, False, None, False, None),
        ("holding:10", ValueKind.INTEGER, True, 16, False, None),
        ("input:10:int32", ValueKind.INTEGER, False, 32, True, None),
        ("holding:110:float32", ValueKind.FLOAT, True, None, False, None),
        ("holding:200:string:64", ValueKind.STRING, True, None, False, 64),
    ],
)
def test_modbus_addresses_say_what_they_hold(  # noqa: PLR0917 (parametrized)
    text: str, kind: ValueKind, writable: bool, bits: int | None, signed: bool, length: int | None
) -> None:
    info = RegisterAddress.parse(text).info
    assert (info.kind, info.writable, info.bits, info.signed, info.length) == (
        kind,
        writable,
        bits,
        signed,
        length,
    )


def test_counter_wrap_is_known_from_the_kind() -> None:
    uint16 = RegisterAddress.parse("holding:10").info
    assert uint16.wraps(65535, 0)
    assert not uint16.wraps(5, 6)  # a plain step is not a wrap
    assert not uint16.wraps(10, 0)  # a reset is not a wrap
    assert not RegisterAddress.parse("holding:10:int16").info.wraps(32767, -32768)
    with pytest.raises(ValueError, match="bits"):
        AddressInfo(ValueKind.INTEGER, writable=True, type_name="x")
    with pytest.raises(ValueError, match="length"):
        AddressInfo(ValueKind.BOOL, writable=True, type_name="x", length=3)


def test_addresses_known_only_to_the_plc_say_so() -> None:
    assert NodeAddress.parse("ns=2;s=A").info is None
    assert TagAddress.parse("A").info is None
    assert S7Address.parse("DB1.DBX0.0").info.kind is ValueKind.BOOL


def test_full_jitter_stays_under_its_ceiling() -> None:
    random.seed(3)
    assert all(
        0 <= full_jitter(n, base_s=0.2, cap_s=10) <= min(10, 0.2 * 1.5**n) for n in range(60)
    )
    backoff = Backoff(0.2, 1.0)
    for _ in range(50):
        assert 0 <= backoff.next_delay() <= 1.0
    assert backoff.attempt == 50
    backoff.reset()
    assert backoff.attempt == 0


def test_every_driver_is_a_plc() -> None:
    # mypy checks each against the protocol the agent holds them by
    modbus: Plc[RegisterAddress] = ModbusPlc("a", ModbusTcpSettings(host="h"))
    opcua: Plc[NodeAddress] = OpcUaPlc("b", OpcUaSettings(endpoint="opc.tcp://h:4840"))
    s7: Plc[S7Address] = S7Plc("c", S7Settings(host="h"))
    enip: Plc[TagAddress] = EnipPlc("d", EnipSettings(host="h"))
    assert [p.id for p in (modbus, opcua, s7, enip)] == ["a", "b", "c", "d"]
    assert not any(p.health.connected for p in (modbus, opcua, s7, enip))
