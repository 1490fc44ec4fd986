"""The batch tracker against a real outbox file: one code per batch, whatever the PLC does.

The PLC side is `MemoryPlc`, a real implementation of the tracker's `PlcLink` protocol that
records what the agent writes; the polls are the values a Modbus read would have returned.
Restarts are a new tracker on the same outbox file, as after kill -9 (the outbox's own
durability is proven in test_outbox.py).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import pytest
from biip.gs1_messages import GS1Message
from biip.gtin import Gtin

from agent.alarms import AlarmBoard
from agent.batches.tracecode import TraceCodeError, compose
from agent.batches.tracker import BatchTracker
from agent.batches.work_orders import WorkOrder
from agent.config.line import LineSection
from agent.config.plcs import PlcOpcUaConfig, PlcTcpConfig
from agent.events import EventFactory
from agent.scanning.interpret import Material
from drivers.base import AddressInfo, DeviceDisconnected, ValueKind
from sync.outbox import Outbox

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from drivers.plcs.registers import RegisterAddress
    from sync.base import Envelope

GTIN = "09501101530003"
OTHER_GTIN = "09501101530010"
NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class MemoryPlc:
    """The PLC as the tracker sees it: what it was told, in order."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, bool | float | str]] = []

    async def write(self, address: RegisterAddress, value: bool | float | str) -> None:
        self.writes.append((str(address), value))

    def told(self, address: str) -> list[bool | float | str]:
        return [v for a, v in self.writes if a == address]


class UnpluggedPlc:
    """A link that breaks on every write: the agent committed but could not tell the PLC."""

    async def write(self, address: RegisterAddress, value: bool | float | str) -> None:
        raise DeviceDisconnected(f"link lost writing {value!r} to {address}")


def plc_config(batch: dict[str, str], plc_id: str = "filler") -> PlcTcpConfig:
    return PlcTcpConfig.model_validate(
        {
            "id": plc_id,
            "protocol": "modbus-tcp",
            "host": "127.0.0.1",
            "batch": batch,
            "params": {"fill_temp_c": "holding:110:float32"},
        }
    )


HANDSHAKE = {
    "trigger": "coil:0",
    "ack": "coil:1",
    "quantity": "holding:100:uint32",
    "write_code_to": "holding:200:string:64",
}
COUNTER = {"trigger": "holding:10", "quantity": "holding:100:uint32"}
EDGE = {"trigger": "coil:0", "quantity": "holding:100:uint32"}


class Bench:
    """An outbox file in tmp_path and trackers over it."""

    def __init__(self, path: Path, **outbox_options: Any) -> None:
        self.path = path
        self.alarms = AlarmBoard()
        self.outbox: Outbox | None = None
        self._options = outbox_options

    async def open(self) -> Outbox:
        self.outbox = Outbox(self.path, synchronous="normal", min_free_bytes=0, **self._options)
        await self.outbox.__aenter__()
        return self.outbox

    async def close(self) -> None:
        if self.outbox is not None:
            await self.outbox.__aexit__(None, None, None)
            self.outbox = None

    async def reopen(self) -> Outbox:
        await self.close()
        return await self.open()

    async def tracker(
        self,
        batch: dict[str, str],
        *,
        gtin: str | None = GTIN,
        plc_id: str = "filler",
        serial_lock: asyncio.Lock | None = None,
        clock: Callable[[], datetime] = lambda: NOON,
        **line: Any,
    ) -> BatchTracker:
        assert self.outbox is not None
        tracker = BatchTracker(
            plc_config(batch, plc_id),
            LineSection.model_validate({"gtin": gtin, **line}),
            factory=EventFactory("plant-a", "line-3", clock),
            store=self.outbox,
            alarms=self.alarms,
            timezone="Asia/Shanghai",
            serial_lock=serial_lock,
        )
        await tracker.restore()
        return tracker

    async def events(self, route: str) -> list[dict[str, Any]]:
        assert self.outbox is not None
        found = await self.outbox.recent(limit=10_000, routes=frozenset({route}))
        return sorted((json.loads(e.payload) for e in found), key=lambda e: int(e["seq"]))

    async def codes(self) -> list[str]:
        return [str(e["data"]["trace_code"]) for e in await self.events("batch.completed")]


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    b = Bench(tmp_path / "outbox.db")
    await b.open()
    try:
        yield b
    finally:
        await b.close()


def poll(trigger: object, *, ack: bool | None = None, quantity: int = 120) -> dict[str, Any]:
    values: dict[str, Any] = {"trigger": trigger, "quantity": quantity, "param:fill_temp_c": 4.25}
    if ack is not None:
        values["ack"] = ack
    return values


# --- trace codes ------------------------------------------------------------------------


def test_trace_code_is_valid_gs1_and_parses_back_to_its_fields() -> None:
    code = compose(
        "(01){gtin}(10){lot}(11){date:%y%m%d}(21){serial}",
        gtin=GTIN,
        lot="line-326112401",
        serial="000042",
        day=date(2026, 11, 24),
        node="line-3",
        site="plant-a",
    )
    assert code.hri == f"(01){GTIN}(10)line-326112401(11)261124(21)000042"
    message = GS1Message.parse_hri(code.hri)
    fields = {es.ai.ai: es.value for es in message.element_strings}
    assert fields == {"01": GTIN, "10": "line-326112401", "11": "261124", "21": "000042"}
    assert Gtin.parse(fields["01"]).check_digit == int(GTIN[-1])
    assert code.digital_link.startswith(f"https://id.gs1.org/01/{GTIN}/10/line-326112401/21/000042")


@pytest.mark.parametrize(
    ("template", "gtin", "lot"),
    [
        pytest.param("(01){gtin}(10){lot}(21){serial}", "09501101530004", "L1", id="check-digit"),
        pytest.param("(01){gtin}(10){lot}(21){serial}", GTIN, "L" * 21, id="lot-too-long"),
        pytest.param("(01){gtin}(10){lot}", GTIN, "L1", id="no-serial"),
        pytest.param("(01){gtin}(10){lot}(21){serial}{nope}", GTIN, "L1", id="unknown-field"),
        pytest.param("(01){gtin}(21){lot}", GTIN, "L1", id="lot-as-serial"),
    ],
)
def test_templates_that_break_gs1_are_refused(template: str, gtin: str, lot: str) -> None:
    with pytest.raises(TraceCodeError):
        compose(template, gtin=gtin, lot=lot, serial="1", day=date(2026, 1, 1), node="n", site="s")


# --- handshake ----------------------------------------------------------------------------


async def test_handshake_stamps_once_however_often_the_request_is_seen(bench: Bench) -> None:
    tracker = await bench.tracker(HANDSHAKE)
    plc = MemoryPlc()
    await tracker.on_poll(poll(False, ack=False), plc, fresh_link=False)
    for _ in range(3):  # the request seen on several polls before the PLC sees the ack
        await tracker.on_poll(poll(True, ack=False, quantity=77), plc, fresh_link=False)
    await tracker.on_poll(poll(True, ack=True), plc, fresh_link=False)
    codes = await bench.codes()
    assert len(codes) == 1
    assert plc.told("holding:200:string:64") == [codes[0]] * 3
    assert plc.told("coil:1") == [True] * 3
    await tracker.on_poll(poll(False, ack=True), plc, fresh_link=False)
    assert plc.told("coil:1")[-1] is False
    await tracker.on_poll(poll(False, ack=False), plc, fresh_link=False)
    await tracker.on_poll(poll(True, ack=False), plc, fresh_link=False)
    codes = await bench.codes()
    assert [c[-6:] for c in codes] == ["000001", "000002"]
    completed = (await bench.events("batch.completed"))[0]["data"]
    assert completed["quantity"] == 77
    assert completed["params"] == {"fill_temp_c": 4.25}


async def test_handshake_restart_between_commit_and_ack_acknowledges_the_same_batch(
    bench: Bench,
) -> None:
    tracker = await bench.tracker(HANDSHAKE)
    with pytest.raises(DeviceDisconnected):  # committed, then the PLC could not be told
        await tracker.on_poll(poll(True, ack=False), UnpluggedPlc(), fresh_link=False)
    first = await bench.codes()
    assert len(first) == 1
    await bench.reopen()  # the agent restarts
    tracker = await bench.tracker(HANDSHAKE)
    plc = MemoryPlc()
    await tracker.on_poll(poll(True, ack=False), plc, fresh_link=True)
    assert await bench.codes() == first
    assert plc.writes == [("holding:200:string:64", first[0]), ("coil:1", True)]
    await tracker.on_poll(poll(False, ack=True), plc, fresh_link=False)
    await tracker.on_poll(poll(True, ack=False), plc, fresh_link=False)  # the next batch
    assert len(await bench.codes()) == 2


async def test_handshake_batch_id_tells_a_new_request_after_a_plc_reboot_from_the_stamped_one(
    bench: Bench,
) -> None:
    """Agent down between commit and ack; meanwhile the PLC reboots and requests a NEW batch.

    The coils look the same as "the stamped batch, still pending"; the batch id tells them apart.
    """
    signals = {**HANDSHAKE, "batch_id": "holding:10"}
    tracker = await bench.tracker(signals)
    with pytest.raises(DeviceDisconnected):  # batch 7 committed, the PLC never told
        await tracker.on_poll(
            {**poll(True, ack=False), "batch_id": 7}, UnpluggedPlc(), fresh_link=False
        )
    await bench.reopen()
    tracker = await bench.tracker(signals)
    plc = MemoryPlc()
    await tracker.on_poll({**poll(True, ack=False), "batch_id": 1}, plc, fresh_link=True)
    codes = await bench.codes()
    assert len(codes) == 2, "the rebooted PLC's batch 1 got a code of its own"
    assert plc.writes == [("holding:200:string:64", codes[1]), ("coil:1", True)]
    # and the same batch id again after a restart is still the stamped batch: no third code
    await bench.reopen()
    tracker = await bench.tracker(signals)
    await tracker.on_poll({**poll(True, ack=False), "batch_id": 1}, MemoryPlc(), fresh_link=True)
    assert len(await bench.codes()) == 2


async def test_handshake_plc_restart_mid_handshake_ends_it(bench: Bench) -> None:
    tracker = await bench.tracker(HANDSHAKE)
    plc = MemoryPlc()
    await tracker.on_poll(poll(True, ack=False), plc, fresh_link=False)
    # the PLC reboots with its memory zeroed: request and ack both low
    await tracker.on_poll(poll(False, ack=False), plc, fresh_link=True)
    await tracker.on_poll(poll(True, ack=False), plc, fresh_link=False)  # its next batch
    assert len(await bench.codes()) == 2


async def test_no_product_means_no_code_and_no_ack_until_a_work_order_comes(
    bench: Bench,
) -> None:
    tracker = await bench.tracker(HANDSHAKE, gtin=None)
    plc = MemoryPlc()
    await tracker.on_poll(poll(True, ack=False), plc, fresh_link=False)
    assert await bench.codes() == []
    assert plc.writes == []
    assert bench.alarms.is_active("no-product:filler")
    await tracker.set_work_order(WorkOrder("WO-9", OTHER_GTIN, "LOT9"))
    await tracker.on_poll(poll(True, ack=False), plc, fresh_link=False)
    assert await bench.codes() == [f"(01){OTHER_GTIN}(10)LOT9(11)261124(21)000001"]
    assert not bench.alarms.is_active("no-product:filler")


async def test_a_full_outbox_holds_the_handshake_until_there_is_room(tmp_path: Path) -> None:
    bench = Bench(tmp_path / "o.db", max_backlog_bytes=1500, destinations=["erp"])
    outbox = await bench.open()
    try:
        tracker = await bench.tracker(HANDSHAKE)
        plc = MemoryPlc()
        await tracker.on_poll(poll(True, ack=False), plc, fresh_link=False)
        await tracker.on_poll(poll(False, ack=True), plc, fresh_link=False)
        await tracker.on_poll(poll(True, ack=False), plc, fresh_link=False)  # refused
        assert len(await bench.codes()) == 1
        assert plc.told("coil:1") == [True, False]
        assert bench.alarms.is_active("batch-refused:filler")
        outbox.advance("erp", outbox.last_seq)  # the destination caught up
        await tracker.on_poll(poll(True, ack=False), plc, fresh_link=False)
        assert [c[-6:] for c in await bench.codes()] == ["000001", "000002"]
        assert plc.told("coil:1") == [True, False, True]
        assert not bench.alarms.is_active("batch-refused:filler")
    finally:
        await bench.close()


# --- counter ------------------------------------------------------------------------------


async def test_counter_steps_once_each_across_restart_reset_and_wrap(bench: Bench) -> None:
    tracker = await bench.tracker(COUNTER)
    plc = MemoryPlc()

    async def counter(value: int, *, fresh: bool = False) -> None:
        await tracker.on_poll(poll(value), plc, fresh_link=fresh)

    await counter(41)  # the first value is the baseline, not a batch
    assert await bench.codes() == []
    for value in (42, 42, 43, 43, 43):
        await counter(value)
    assert len(await bench.codes()) == 2
    await bench.reopen()
    tracker = await bench.tracker(COUNTER)
    await counter(43, fresh=True)  # re-read after a restart: nothing new
    assert len(await bench.codes()) == 2
    await counter(0, fresh=True)  # the PLC was reset: re-baseline
    await counter(1)
    assert len(await bench.codes()) == 3
    await counter(65535)  # a jump: one code, and an alarm says batches were missed
    assert len(await bench.codes()) == 4
    assert bench.alarms.is_active("batch-gap:filler")
    await counter(0)  # uint16 rolls over: a step, not a reset
    assert len(await bench.codes()) == 5
    assert plc.writes == []
    serials = [c[-6:] for c in await bench.codes()]
    assert serials == [f"{n:06d}" for n in range(1, 6)]


# --- edge ---------------------------------------------------------------------------------


async def test_edge_stamps_rising_edges_only_and_not_a_level_across_restart(
    bench: Bench,
) -> None:
    tracker = await bench.tracker(EDGE)
    plc = MemoryPlc()
    await tracker.on_poll(poll(True), plc, fresh_link=False)  # high at start: no edge seen
    assert await bench.codes() == []
    for level in (False, True, True, False, True):
        await tracker.on_poll(poll(level), plc, fresh_link=False)
    assert len(await bench.codes()) == 2
    await bench.reopen()
    tracker = await bench.tracker(EDGE)
    await tracker.on_poll(poll(True), plc, fresh_link=True)  # still the same high level
    assert len(await bench.codes()) == 2
    await tracker.on_poll(poll(False), plc, fresh_link=False)
    await tracker.on_poll(poll(True), plc, fresh_link=False)
    assert len(await bench.codes()) == 3


# --- work orders, materials, serials ------------------------------------------------------


async def test_work_order_reopens_an_empty_batch_and_materials_go_into_the_open_lot(
    bench: Bench,
) -> None:
    tracker = await bench.tracker(HANDSHAKE)
    await tracker.set_work_order(WorkOrder("WO-1", GTIN, planned_qty=500))
    started = await bench.events("batch.started")
    assert [s["data"]["work_order"] for s in started] == [None, "WO-1"]
    lot = started[-1]["data"]["lot"]
    assert lot == "line-326112401"  # lot_template with the plant's local date

    consumed: list[Envelope] = []
    for n in (1, 2):
        data: dict[str, object] = {"gtin": OTHER_GTIN, "lot": f"M{n}", "raw": f"raw{n}"}
        material = Material(data, (("lot", f"M{n}"),), tracker.plc_id)
        consumed.append(await tracker.consume(material, "scanner:line"))
        event = json.loads(consumed[-1].payload)
        assert event["data"] == {**data, "batch": lot}
        assert "batch" not in data, "the scan's data is the scanner's, never changed"
        assert bench.outbox is not None
        assert (await bench.outbox.lookup("batch", lot))[-1].seq == consumed[-1].seq
    await tracker.scan_work_order("WO-2")  # the batch has materials: it stays as it is
    assert len(await bench.events("batch.started")) == 2
    assert tracker.next_work_order == WorkOrder("WO-2", GTIN)
    await bench.reopen()  # materials and the work order survive a restart
    tracker = await bench.tracker(HANDSHAKE)
    assert tracker.open is not None
    assert (tracker.open.work_order, tracker.open.planned_qty) == ("WO-1", 500)
    assert tracker.next_work_order == WorkOrder("WO-2", GTIN)
    await tracker.on_poll(poll(True, ack=False), MemoryPlc(), fresh_link=False)
    done = (await bench.events("batch.completed"))[0]["data"]
    assert done["work_order"] == "WO-1"
    assert done["lot"] == lot
    assert done["materials"] == [
        {"gtin": OTHER_GTIN, "lot": "M1", "raw": "raw1"},
        {"gtin": OTHER_GTIN, "lot": "M2", "raw": "raw2"},
    ]
    following = (await bench.events("batch.started"))[-1]["data"]
    assert following["work_order"] == "WO-2"
    assert following["lot"] == "line-326112402"
    assert tracker.next_work_order is None


async def test_two_lines_with_one_product_never_share_a_serial(bench: Bench) -> None:
    lock = asyncio.Lock()
    lines = [
        await bench.tracker(EDGE, plc_id=name, serial_lock=lock, lot_template="{node}-{batch}")
        for name in ("filler-a", "filler-b")
    ]
    plc = MemoryPlc()
    for tracker in lines:
        await tracker.on_poll(poll(False), plc, fresh_link=False)
    for _ in range(20):
        await asyncio.gather(
            *(t.on_poll(poll(True), plc, fresh_link=False) for t in lines),
        )
        await asyncio.gather(
            *(t.on_poll(poll(False), plc, fresh_link=False) for t in lines),
        )
    codes = await bench.codes()
    assert len(codes) == 40
    assert len(set(codes)) == 40
    serials = sorted(c[-6:] for c in codes)
    assert serials == [f"{n:06d}" for n in range(1, 41)]


async def test_serials_are_per_product_and_the_lot_counts_batches_of_the_day(
    bench: Bench,
) -> None:
    tracker = await bench.tracker(EDGE)
    plc = MemoryPlc()
    await tracker.on_poll(poll(False), plc, fresh_link=False)
    for n in range(6):
        if n == 3:
            await tracker.set_work_order(WorkOrder("WO-X", OTHER_GTIN))
        await tracker.on_poll(poll(True), plc, fresh_link=False)
        await tracker.on_poll(poll(False), plc, fresh_link=False)
    done = [e["data"] for e in await bench.events("batch.completed")]
    assert [(d["gtin"], d["serial"]) for d in done] == [
        (GTIN, "000001"),
        (GTIN, "000002"),
        (GTIN, "000003"),
        (OTHER_GTIN, "000001"),
        (OTHER_GTIN, "000002"),
        (OTHER_GTIN, "000003"),
    ]
    lots = [d["lot"] for d in done]
    assert lots == [f"line-3261124{n:02d}" for n in range(1, 7)]
    for d in done:
        message = GS1Message.parse_hri(d["trace_code"])
        assert {es.ai.ai: es.value for es in message.element_strings} == {
            "01": d["gtin"],
            "10": d["lot"],
            "11": "261124",
            "21": d["serial"],
        }


# --- batches of the day across midnight -------------------------------------------------


class WallClock:
    """The agent's clock, moved by the test (UTC; the plant is in Asia/Shanghai, UTC+8)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_the_first_batch_after_midnight_is_number_one_even_after_a_late_scan(
    bench: Bench,
) -> None:
    """Batch 04 opens before midnight, gets a material after it, and completes after it.

    It stays batch 04 of the day it opened (its lot was composed then); the batch opened at its
    completion is the first of the new day: 01. Its production date (AI 11) is the day it ended.
    """
    clock = WallClock(datetime(2026, 11, 24, 15, 0, tzinfo=UTC))  # 23:00 on the 24th, local
    tracker = await bench.tracker(EDGE, clock=clock)
    plc = MemoryPlc()
    await tracker.on_poll(poll(False), plc, fresh_link=False)
    for _ in range(3):  # batches 01..03 of the 24th; 04 is open
        await tracker.on_poll(poll(True), plc, fresh_link=False)
        await tracker.on_poll(poll(False), plc, fresh_link=False)
    assert tracker.open is not None
    assert tracker.open.lot == "line-326112404"

    clock.now = datetime(2026, 11, 24, 16, 30, tzinfo=UTC)  # 00:30 on the 25th, local
    data: dict[str, object] = {"gtin": OTHER_GTIN, "lot": "M1", "raw": "raw1"}
    envelope = await tracker.consume(Material(data, (), tracker.plc_id), "scanner:line")
    await tracker.scan_operator("JANE")
    assert json.loads(envelope.payload)["data"]["batch"] == "line-326112404"
    await bench.reopen()  # and across a restart after midnight
    tracker = await bench.tracker(EDGE, clock=clock)
    await tracker.on_poll(poll(True), plc, fresh_link=False)

    done = (await bench.events("batch.completed"))[-1]["data"]
    assert done["lot"] == "line-326112404"
    assert "(11)261125" in done["trace_code"]  # produced (completed) on the 25th
    assert done["materials"] == [{"gtin": OTHER_GTIN, "lot": "M1", "raw": "raw1"}]
    following = (await bench.events("batch.started"))[-1]["data"]
    assert following["lot"] == "line-326112501"


async def test_an_empty_batch_reopened_after_midnight_is_the_first_of_the_new_day(
    bench: Bench,
) -> None:
    """A work order arriving after midnight re-opens yesterday's empty batch 02 as today's 01."""
    clock = WallClock(datetime(2026, 11, 24, 15, 0, tzinfo=UTC))  # 23:00 local
    tracker = await bench.tracker(EDGE, clock=clock)
    plc = MemoryPlc()
    await tracker.on_poll(poll(False), plc, fresh_link=False)
    await tracker.on_poll(poll(True), plc, fresh_link=False)
    await tracker.on_poll(poll(False), plc, fresh_link=False)
    assert tracker.open is not None
    assert tracker.open.lot == "line-326112402"
    clock.now = datetime(2026, 11, 24, 16, 30, tzinfo=UTC)  # 00:30 on the 25th
    await tracker.set_work_order(WorkOrder("WO-7", GTIN, planned_qty=100))
    assert tracker.open.lot == "line-326112501"
    await tracker.on_poll(poll(True), plc, fresh_link=False)
    assert tracker.open.lot == "line-326112502"


# --- a trigger whose type only the PLC knows (OPC UA, EtherNet/IP) ------------------------


async def test_a_trigger_the_plc_describes_decides_the_mode_and_its_wrap(bench: Bench) -> None:
    assert bench.outbox is not None
    config = PlcOpcUaConfig.model_validate(
        {
            "id": "capper",
            "endpoint": "opc.tcp://127.0.0.1:4840",
            "batch": {"trigger": "ns=2;s=Capper.Count", "quantity": "ns=2;s=Capper.Qty"},
        }
    )
    tracker = BatchTracker(
        config,
        LineSection.model_validate({"gtin": GTIN}),
        factory=EventFactory("plant-a", "line-3", lambda: NOON),
        store=bench.outbox,
        alarms=bench.alarms,
        timezone="Asia/Shanghai",
    )
    await tracker.restore()
    plc = MemoryPlc()
    assert tracker.mode == "unknown"  # until the server says what the node holds
    await tracker.on_poll({"trigger": 5, "quantity": 1}, plc, fresh_link=False)
    assert await bench.codes() == []
    tracker.trigger.trigger_info = AddressInfo(ValueKind.INTEGER, False, "UInt16", bits=16)
    assert tracker.mode == "counter"
    for value in (65534, 65535, 0):  # baseline, a step, and UInt16 rolling over: a step
        await tracker.on_poll({"trigger": value, "quantity": 1}, plc, fresh_link=False)
    assert len(await bench.codes()) == 2
    assert not bench.alarms.is_active("batch-gap:capper")
    tracker.trigger.trigger_info = AddressInfo(ValueKind.BOOL, True, "Boolean")
    assert tracker.mode == "edge"
