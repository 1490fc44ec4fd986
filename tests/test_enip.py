"""EnipPlc against cpppo's EtherNet/IP server playing a Logix filling line.

The server is `drivers.simulators.enip_plc`.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

import pytest
from plc_support import streaming
from pydantic import ValidationError
from support import free_port, wait_until

from drivers.base import AddressRejected, DeviceUnavailable, DriverError, ValueKind
from drivers.plcs.enip import EnipPlc, EnipSettings, TagAddress
from drivers.simulators.enip_plc import TAGS, EnipLineSimulator, tag

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

WATCH = {s: TagAddress.parse(tag(s)) for s in TAGS if not s.startswith("code")}
CODE = TagAddress.parse(tag("code"))
SHORT_CODE = TagAddress.parse(tag("code_short"))
ACK = WATCH["ack"]


def plc_for(sim: EnipLineSimulator, **overrides: object) -> EnipPlc:
    fields: dict[str, object] = {"host": sim.host, "port": sim.port, "poll_ms": 20}
    fields.update(overrides)
    settings = EnipSettings.model_validate(fields)
    return EnipPlc("palletiser", settings, watch=WATCH, backoff_base_s=0.05, backoff_cap_s=0.2)


@pytest.fixture
async def sim() -> AsyncIterator[EnipLineSimulator]:
    async with EnipLineSimulator(auto=False, seed=1) as s:
        yield s


def test_tag_names() -> None:
    for good in ("BatchDone", "Program:Main.Count", "Codes[3]", "Line.Status.2", "_x1"):
        assert str(TagAddress.parse(good)) == good
    assert TagAddress.parse("BatchDone").info is None  # the PLC says, at connect
    for bad in ("1Tag", "Batch Done", "Tag[", "DB10.DBX0.0:bool", ""):
        with pytest.raises(ValueError, match="not a Logix tag name"):
            TagAddress.parse(bad)


def test_settings_model() -> None:
    s = EnipSettings(host="10.0.0.23")
    assert (s.port, s.slot, s.poll_ms) == (44818, 0, 100)
    with pytest.raises(ValidationError, match="extra"):
        EnipSettings.model_validate({"host": "h", "rack": 0})
    for name, field in EnipSettings.model_fields.items():
        assert field.description, f"EnipSettings.{name} has no description"


class SendCounter:
    """Counts the requests a pylogix connection sends (wraps the real `send`)."""

    def __init__(self, plc: EnipPlc) -> None:
        self.count = 0
        conn = plc._plc.conn
        original = conn.send

        def send(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        conn.send = send


async def test_one_request_reads_every_kind(sim: EnipLineSimulator) -> None:
    await sim.set_value("quantity", -7)
    async with plc_for(sim) as plc:
        counter = SendCounter(plc)
        snapshot = await plc.poll()
        assert counter.count == 1
        assert plc.requests_per_poll == 1
        values = snapshot.values
        assert (values["trigger"], values["quantity"]) == (False, -7)
        assert isinstance(values["fill_temp_c"], float)
        kinds = {name: (await plc.describe(a)).kind for name, a in WATCH.items()}
        assert kinds["trigger"] is ValueKind.BOOL
        assert kinds["counter"] is ValueKind.INTEGER
        assert kinds["fill_temp_c"] is ValueKind.FLOAT
        assert (await plc.describe(CODE)).type_name == "STRING (CIP)"


@pytest.mark.parametrize("target", [CODE, SHORT_CODE])
async def test_strings_are_written_in_the_type_the_plc_reports(
    sim: EnipLineSimulator, target: TagAddress
) -> None:
    code = "(01)09501101530003(10)L1(21)000007"
    async with plc_for(sim) as plc:
        await plc.write(target, code)
        signal = "code" if target is CODE else "code_short"
        assert sim.value(signal) == code  # the first character is not lost
        assert (await plc.read({"c": target}))["c"] == code
        await plc.write(target, "odd")  # a CIP STRING is padded to an even length
        assert (await plc.read({"c": target}))["c"] == "odd"


async def test_handshake_with_ack_writes(sim: EnipLineSimulator) -> None:
    async with plc_for(sim) as plc, streaming(plc) as stream:
        await sim.complete_batch(quantity=118)
        await stream.wait_for(lambda s: s.values["trigger"] is True)
        pending = stream.last(lambda s: s.values["trigger"] is True)
        assert (pending.values["quantity"], pending.values["counter"]) == (118, 1)
        await plc.write(CODE, "CODE-1")
        await plc.write(ACK, value=True)
        await stream.wait_for(lambda s: s.values["trigger"] is False and s.values["ack"] is True)
        await plc.write(ACK, value=False)
        await stream.wait_for(lambda s: s.values["ack"] is False)
        assert sim.last_code == "CODE-1"
        with pytest.raises(TypeError, match="takes a bool"):
            await plc.write(ACK, "yes")


async def test_a_tag_that_does_not_exist_names_itself(sim: EnipLineSimulator) -> None:
    async with plc_for(sim) as plc:
        with pytest.raises(AddressRejected, match="BatchDon: no such tag") as info:
            await plc.read({"x": TagAddress.parse("BatchDon")})
        assert info.value.address == "BatchDon"
        with pytest.raises(AddressRejected, match="NoTag"):
            await plc.write(TagAddress.parse("NoTag"), 1)
        assert (await plc.poll()).values["trigger"] is False  # the link is still good
    watch = {**WATCH, "param:oops": TagAddress.parse("FillTemp")}
    plc = EnipPlc("palletiser", EnipSettings(host=sim.host, port=sim.port), watch=watch)
    with pytest.raises(AddressRejected, match="FillTemp"):
        await plc.__aenter__()
    assert not plc.connected


async def test_restart_reconnects_and_flags_it(sim: EnipLineSimulator) -> None:
    async with plc_for(sim, timeout_ms=500) as plc, streaming(plc) as stream:
        await sim.complete_batch(quantity=50)
        await stream.wait_for(lambda s: s.values["counter"] == 1)
        await sim.restart(zero=True)
        await stream.wait_for(lambda s: s.after_reconnect, within=20)
        fresh = stream.last(lambda s: s.after_reconnect)
        assert (fresh.values["counter"], fresh.values["trigger"]) == (0, False)
        assert plc.health.reconnects >= 1


async def test_slow_answers_are_errors_and_recover(sim: EnipLineSimulator) -> None:
    async with plc_for(sim, timeout_ms=200) as plc, streaming(plc) as stream:
        await stream.wait_for(lambda _: True)
        errors = plc.health.errors
        sim.set_delay(0.6)
        await wait_until(lambda: plc.health.errors > errors, what="slow poll recorded")
        assert plc.health.last_error is not None
        sim.set_delay(0.0)
        await sim.set_value("quantity", 77)
        await stream.wait_for(lambda s: s.after_reconnect and s.values["quantity"] == 77)


async def test_nobody_listening_is_unavailable() -> None:
    plc = EnipPlc("palletiser", EnipSettings(host="127.0.0.1", port=free_port(), timeout_ms=300))
    with pytest.raises(DeviceUnavailable, match="cannot connect"):
        await plc.__aenter__()
    assert plc.health.last_error is not None


async def test_cancelling_a_call_leaves_no_thread_behind(sim: EnipLineSimulator) -> None:
    async with plc_for(sim, timeout_ms=3000) as plc:
        sim.set_delay(1.0)
        task = asyncio.create_task(plc.poll())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not plc.connected  # dropped with the cancelled call
        sim.set_delay(0.0)
        with pytest.raises(DriverError):
            await plc.poll()
    await wait_until(
        lambda: not any(t.name.startswith("enip:palletiser") for t in threading.enumerate()),
        timeout=5,
        what="the worker thread ends",
    )
