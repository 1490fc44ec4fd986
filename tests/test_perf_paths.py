"""The hot paths tuned for `lineside bench` still say exactly what the slow paths said."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pytest
from biip import ParseConfig, ParseError
from biip.gs1_element_strings import GS1ElementString
from biip.symbology import SymbologyIdentifier
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from ulid import ULID

from agent import events
from agent.cli.bench_drain import DeliveryWatch, peak_rss_kib
from agent.scanning.gs1_elements import extract_element
from agent.scanning.symbology import split_identifier
from sync.base import Envelope
from sync.mqtt_paho import EventProperties, PahoLog

if TYPE_CHECKING:
    from collections.abc import Callable


@pytest.mark.parametrize("event_id", ["01ARZ3NDEKTSV4RRFFQ69G5FAV", "x" * 200, "ü" * 70, ""])
def test_event_properties_pack_as_paho_does(event_id: str) -> None:
    reference = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    reference.UserProperty = [("id", event_id)]
    fast = EventProperties(event_id)
    assert fast.pack() == reference.pack()  # type: ignore[no-untyped-call]
    decoded = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    decoded.unpack(fast.pack())  # type: ignore[no-untyped-call]
    assert decoded.UserProperty == [("id", event_id)]  # type: ignore[attr-defined]
    assert event_id in str(fast)


def test_paho_log_keeps_the_last_error_and_passes_records_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    parent = logging.getLogger("sync.mqtt.paho")
    paho_log = PahoLog(parent)
    with caplog.at_level(logging.INFO, logger="sync.mqtt.paho"):
        paho_log.log(logging.DEBUG, "Sending PUBLISH (m%d)", 1)
        paho_log.log(logging.ERROR, "failed to receive on socket: %s", "reset")
        paho_log.warning("a warning")
    assert paho_log.last_error == "failed to receive on socket: reset"
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["failed to receive on socket: reset", "a warning"]


@pytest.mark.parametrize(
    "rest",
    [
        "0109501101530003172712311",
        "01095011015300031727123110ABC\x1d21XYZ",
        "0109501101530003\x1d10LOT",
        "010950110153000",  # too short
        "0109501101530004",  # bad check digit (an element with a gtin_error)
        "17271231",
        "17271331",  # no 13th month
        "1727\x1d1231",
        "10LOT-7\x1d21X",
        "10" + "L" * 25,  # longer than the AI allows
        "00009501101530000001",
        "21SERIAL",
        "21ABC\x1d10X",
        "21" + "S" * 25,  # longer than the AI allows
        "21",
        "21\x1d10X",
        "21ab~c",  # outside the AI's character set
        '21"%?_z',
    ],
)
def test_repeating_elements_parse_as_biip_parses_them(rest: str) -> None:
    def outcome(parse: Callable[[], GS1ElementString]) -> GS1ElementString | str:
        try:
            return parse()
        except ParseError as exc:
            return f"ParseError: {exc}"

    expected = outcome(
        lambda: GS1ElementString.extract(rest, config=ParseConfig(separator_chars=("\x1d",)))
    )
    assert outcome(lambda: extract_element(rest)) == expected
    assert outcome(lambda: extract_element(rest)) == expected  # again, from the cache


def test_ulids_are_what_python_ulid_reads_unique_and_in_order() -> None:
    before = time.time()
    ids = [events.new_ulid() for _ in range(5000)]
    after = time.time()
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    for ident in ids[:: len(ids) // 10]:
        parsed = ULID.from_str(ident)
        assert str(parsed) == ident
        assert before - 0.002 <= parsed.timestamp <= after + 0.002


def _biip_split(text: str) -> tuple[SymbologyIdentifier | None, str]:
    try:
        identifier = SymbologyIdentifier.extract(text)
    except (ParseError, ValueError, IndexError):
        return None, text
    return identifier, text[len(identifier) :]


@pytest.mark.parametrize(
    "text", ["]d2010950110153000317", "]C1ABC", "]E09501101530003", "]Y0X", "]Y12AB", "]Y1", "]Z9"]
)
def test_split_identifier_from_its_cache_as_biip_says(text: str) -> None:
    assert split_identifier(text) == _biip_split(text)
    assert split_identifier(text) == _biip_split(text)  # again, from the cache if cached
    other = text[:3] + "0other"  # the same prefix with other data
    assert split_identifier(other) == _biip_split(other)


def test_ulid_source_never_goes_back_with_the_clock() -> None:
    source = events.UlidSource()
    first = source()
    ahead = source._ms + 10_000
    source._set_ms(ahead)  # as if the wall clock had just stepped back 10 s
    after = source()
    assert after > first
    assert ULID.from_str(after).milliseconds == ahead  # it stays on the newest millisecond


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, 999, tzinfo=timezone(timedelta(hours=8))),
        datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_format_time_as_strftime(moment: datetime) -> None:
    utc = moment.astimezone(UTC)
    expected = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    assert events.format_time(moment) == expected.rjust(24, "0")


async def test_delivery_watch_counts_all_and_times_only_the_timed_seqs() -> None:
    watch = DeliveryWatch()
    batch = [Envelope(seq, f"E{seq}", "goods.received", b"{}", 0.0) for seq in (1, 2, 3)]
    watch.acknowledged(batch[:2])
    watch.timed_after = 2
    watch.acknowledged(batch[2:])
    await watch.wait(3)
    assert watch.count == 3
    assert list(watch.acked) == [3]


def test_peak_rss_is_this_process_high_water_mark() -> None:
    peak = peak_rss_kib()
    # the test process holds pytest and its plugins: some MB, not GB
    assert 2**10 < peak < 2**22
