"""S7Plc against python-snap7's server answering as a CPU (drivers.simulators.s7_plc)."""

from __future__ import annotations

import asyncio
import struct
from typing import TYPE_CHECKING

import pytest
from plc_support import streaming
from pydantic import ValidationError
from snap7.async_client import AsyncISOTCPConnection
from support import free_port, wait_until

from drivers.base import (
    AddressRejected,
    DeviceRefused,
    DeviceUnavailable,
    DriverError,
    ValueKind,
)
from drivers.plcs.s7 import S7Plc, S7Settings
from drivers.plcs.s7_address import S7Address, S7Type
from drivers.plcs.s7_plan import plan_reads
from drivers.simulators.s7_plc import ADDRESSES, S7LineSimulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

WATCH = {name: a for name, a in ADDRESSES.items() if name != "code"}
CODE = ADDRESSES["code"]


def plc_for(sim: S7LineSimulator, **overrides: object) -> S7Plc:
    fields: dict[str, object] = {"host": sim.host, "port": sim.port, "poll_ms": 20}
    fields.update(overrides)
    settings = S7Settings.model_validate(fields)
    return S7Plc("labeller", settings, watch=WATCH, backoff_base_s=0.05, backoff_cap_s=0.2)


@pytest.fixture
async def sim() -> AsyncIterator[S7LineSimulator]:
    async with S7LineSimulator(auto=False, seed=1) as s:
        yield s


@pytest.mark.parametrize(
    ("text", "canonical", "kind"),
    [
        ("DB10.DBX0.0", "DB10.DBX0.0", ValueKind.BOOL),
        ("db10.dbx3.7:bool", "DB10.DBX3.7", ValueKind.BOOL),
        ("DB10.DBB4", "DB10.DBB4", ValueKind.INTEGER),
        ("DB10.DBW2:int", "DB10.DBW2:int", ValueKind.INTEGER),
        ("DB10.DBW2", "DB10.DBW2", ValueKind.INTEGER),
        ("DB10.DBD2:dint", "DB10.DBD2:dint", ValueKind.INTEGER),
        ("DB1.DBD0:dword", "DB1.DBD0", ValueKind.INTEGER),
        ("DB1.DBD8:real", "DB1.DBD8:real", ValueKind.FLOAT),
        ("DB10.DBB100:string:64", "DB10.DBB100:string:64", ValueKind.STRING),
    ],
)
def test_addresses_parse_and_print(text: str, canonical: str, kind: ValueKind) -> None:
    address = S7Address.parse(text)
    assert str(address) == canonical
    assert S7Address.parse(canonical) == address
    assert address.info.kind is kind
    assert address.info.writable


def test_address_value_kinds() -> None:
    word = S7Address.parse("DB1.DBW0").info
    assert (word.bits, word.signed) == (16, False)
    dint = S7Address.parse("DB1.DBD0:dint").info
    assert (dint.bits, dint.signed) == (32, True)
    assert S7Address.parse("DB1.DBB0:string:20").info.length == 20
    assert word.wraps(65535, 0)
    assert not dint.wraps(-1, 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("DB10.DX10", "no such S7 area 'DX10'"),
        ("DB10.MW10", "no such S7 area 'MW10'"),
        ("M10.0", "is not DB<n>"),
        ("DB10.DBX0", "a bit address is DBX<byte>.<bit>"),
        ("DB10.DBX0.8", "bit must be 0..7"),
        ("DB10.DBW2:real", "DBW cannot hold real"),
        ("DB10.DBD2:int", "DBD cannot hold int"),
        ("DB10.DBB2:string", "string needs a length"),
        ("DB10.DBB2:string:255", "string needs a length 1..254"),
        ("DB10.DBW2:int:4", "only string takes a length"),
        ("DB10.DBD2:float", "unknown S7 type 'float'"),
        ("DB0.DBX0.0", "DB number must be 1"),
        ("DB10.DBD65534:dint", "runs past"),
    ],
)
def test_bad_addresses_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        S7Address.parse(text)


def test_codec() -> None:
    code = S7Address.parse("DB1.DBB0:string:8")
    assert code.encode("AB") == bytes([8, 2]) + b"AB"
    assert code.decode(bytes([8, 2]) + b"ABxxxxxx") == "AB"
    assert code.decode(bytes([8, 200]) + b"ABCDEFGH") == "ABCDEFGH"  # an untrusted header
    with pytest.raises(ValueError, match="do not fit"):
        code.encode("ABCDEFGHI")
    with pytest.raises(ValueError, match="out of range"):
        S7Address.parse("DB1.DBW0:int").encode(40000)
    assert S7Address.parse("DB1.DBD0:real").decode(struct.pack(">f", 4.5)) == 4.5


def test_settings_model() -> None:
    s = S7Settings(host="10.0.0.22")
    assert (s.port, s.rack, s.slot, s.connection_type) == (102, 0, 1, "pg")
    with pytest.raises(ValidationError):
        S7Settings.model_validate({"host": "h", "connection_type": "tcp"})
    with pytest.raises(ValidationError, match="extra"):
        S7Settings.model_validate({"host": "h", "unit": 1})
    for name, field in S7Settings.model_fields.items():
        assert field.description, f"S7Settings.{name} has no description"


def test_reads_are_packed_into_as_few_jobs_as_the_pdu_allows() -> None:
    near = [S7Address.parse(f"DB10.DBW{2 * i}") for i in range(30)]
    assert len(plan_reads(near, 240).requests) == 1  # one merged range
    apart = [S7Address(db, 0, S7Type.WORD) for db in range(1, 26)]
    plan = plan_reads(apart, 480)
    assert [len(r) for r in plan.requests] == [20, 5]  # the 20-item limit
    big = [S7Address.parse("DB1.DBB0:string:254"), S7Address.parse("DB1.DBX300.0")]
    plan = plan_reads(big, 240)
    assert len(plan.requests) == 2
    assert all(i.size <= 240 - 19 for r in plan.requests for i in r)


async def test_one_job_reads_every_kind(sim: S7LineSimulator) -> None:
    await sim.set_value("quantity", -7)
    await sim.set_value("code", "LAST")
    async with plc_for(sim) as plc:
        jobs = sim.jobs
        snapshot = await plc.poll()
        assert sim.jobs == jobs + 1
        assert plc.requests_per_poll == 1
        assert snapshot.values["quantity"] == -7
        assert snapshot.values["trigger"] is False
        assert isinstance(snapshot.values["fill_temp_c"], float)
        assert (await plc.read({"code": CODE}))["code"] == "LAST"
        assert (await plc.describe(CODE)).length == 64


async def test_bit_writes_change_one_bit_as_on_a_cpu(sim: S7LineSimulator) -> None:
    await sim.set_value("trigger", value=True)
    async with plc_for(sim) as plc:
        await plc.write(ADDRESSES["ack"], value=True)
        assert (sim.value("trigger"), sim.value("ack")) == (True, True)
        await plc.write(ADDRESSES["ack"], value=False)
        assert (sim.value("trigger"), sim.value("ack")) == (True, False)


async def test_the_simulator_serves_every_item_of_a_write_job(sim: S7LineSimulator) -> None:
    conn = AsyncISOTCPConnection(sim.host, sim.port, remote_tsap=0x0101)
    await conn.connect(timeout=2)
    try:
        items = [(0 << 3 | 1, b"\x01", 0x01, 0x03), (6 * 8, b"\x00\x2a", 0x02, 0x04)]
        specs = b"".join(
            struct.pack(">BBBBHHB", 0x12, 0x0A, 0x10, wl, len(v), 10, 0x84) + a.to_bytes(3)
            for a, v, wl, _ in items
        )
        data = b""
        for n, (_, value, _, transport) in enumerate(items):
            length = len(value) if transport == 0x03 else 8 * len(value)
            data += struct.pack(">BBH", 0, transport, length) + value
            data += b"\x00" if len(value) % 2 and n < len(items) - 1 else b""
        params = struct.pack(">BB", 0x05, len(items)) + specs
        header = struct.pack(">BBHHHH", 0x32, 1, 0, 7, len(params), len(data))
        await conn.send_data(header + params + data)
        answer = await conn.receive_data()
    finally:
        await conn.disconnect()
    assert answer[-2:] == b"\xff\xff"  # two items, two return codes
    assert sim.value("ack") is True
    assert sim.value("counter") == 42


async def test_trace_code_and_handshake(sim: S7LineSimulator) -> None:
    async with plc_for(sim) as plc, streaming(plc) as stream:
        await sim.complete_batch(quantity=118)
        await stream.wait_for(lambda s: s.values["trigger"] is True)
        pending = stream.last(lambda s: s.values["trigger"] is True)
        assert (pending.values["quantity"], pending.values["counter"]) == (118, 1)
        await plc.write(CODE, "(01)09501101530003(10)L1(21)000007")
        await plc.write(ADDRESSES["ack"], value=True)
        await stream.wait_for(lambda s: s.values["trigger"] is False and s.values["ack"] is True)
        await plc.write(ADDRESSES["ack"], value=False)
        await stream.wait_for(lambda s: s.values["ack"] is False)
        assert sim.last_code == "(01)09501101530003(10)L1(21)000007"
        with pytest.raises(ValueError, match="do not fit"):
            await plc.write(CODE, "X" * 65)


async def test_a_string_longer_than_the_plc_string_is_refused(sim: S7LineSimulator) -> None:
    longer = S7Address.parse("DB10.DBB100:string:80")  # the PLC's is STRING[64]
    async with plc_for(sim) as plc:
        with pytest.raises(AddressRejected, match=r"70 characters do not fit .*STRING\[64\]"):
            await plc.write(longer, "Y" * 70)
        assert sim.last_code == ""


async def test_wrong_db_and_range_name_themselves(sim: S7LineSimulator) -> None:
    async with plc_for(sim) as plc:
        with pytest.raises(AddressRejected, match=r"DB99\.DBX0\.0: object does not exist") as info:
            await plc.read({"x": S7Address.parse("DB99.DBX0.0")})
        assert info.value.address == "DB99.DBX0.0"
        with pytest.raises(AddressRejected, match=r"DB10\.DBD400: address out of range"):
            await plc.read({"x": S7Address.parse("DB10.DBD400")})
        with pytest.raises(AddressRejected, match=r"DB11\.DBW0"):
            await plc.write(S7Address.parse("DB11.DBW0"), 1)
    watch = {**WATCH, "param:x": S7Address.parse("DB12.DBW0")}
    async with S7Plc("labeller", S7Settings(host=sim.host, port=sim.port), watch=watch) as plc:
        with pytest.raises(AddressRejected, match=r"DB12\.DBW0"):
            await plc.poll()


async def test_put_get_and_protection_refusals_are_named(sim: S7LineSimulator) -> None:
    async with plc_for(sim) as plc:
        sim.faults.refuse = 0x8104
        with pytest.raises(DeviceRefused, match="allow PUT/GET"):
            await plc.poll()
        sim.faults.refuse = 0xD0A1
        with pytest.raises(DeviceRefused, match="protection level"):
            await plc.write(ADDRESSES["ack"], value=True)
        sim.faults.clear()
        sim.faults.item_error = 0x03
        with pytest.raises(AddressRejected, match="access not allowed"):
            await plc.poll()


async def test_restart_reconnects_and_flags_it(sim: S7LineSimulator) -> None:
    async with plc_for(sim, timeout_ms=300) as plc, streaming(plc) as stream:
        await sim.complete_batch(quantity=50)
        await stream.wait_for(lambda s: s.values["counter"] == 1)
        await sim.restart(zero=True)
        await stream.wait_for(lambda s: s.after_reconnect)
        fresh = stream.last(lambda s: s.after_reconnect)
        assert (fresh.values["counter"], fresh.values["trigger"]) == (0, False)
        assert plc.health.reconnects >= 1


@pytest.mark.parametrize("fault", ["slow", "silent", "stopped"])
async def test_slow_silent_and_gone_cpus_recover(sim: S7LineSimulator, fault: str) -> None:
    async with plc_for(sim, timeout_ms=200) as plc, streaming(plc) as stream:
        await stream.wait_for(lambda _: True)
        errors = plc.health.errors
        match fault:
            case "slow":
                sim.faults.delay_s = 0.4
            case "silent":
                sim.faults.drop = True
            case _:
                await sim.stop()
        await wait_until(lambda: plc.health.errors >= errors + 2, what="errors recorded")
        assert plc.health.last_error is not None
        await sim.set_value("quantity", 77)
        sim.faults.clear()
        await sim.start()
        await stream.wait_for(lambda s: s.after_reconnect and s.values["quantity"] == 77)


async def test_nobody_listening_is_unavailable() -> None:
    plc = S7Plc("labeller", S7Settings(host="127.0.0.1", port=free_port(), timeout_ms=300))
    with pytest.raises(DeviceUnavailable, match="rack 0 slot 1"):
        await plc.__aenter__()
    assert plc.health.last_error is not None


async def test_a_cancelled_job_never_answers_the_next(sim: S7LineSimulator) -> None:
    async with plc_for(sim, timeout_ms=2000) as plc:
        sim.faults.delay_s = 0.3
        task = asyncio.create_task(plc.poll())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        sim.faults.clear()
        with pytest.raises(DriverError):  # the link was dropped with the cancelled job
            await plc.poll()
