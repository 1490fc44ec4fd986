"""File-drop destinations end to end: a folder reader never sees a partial file, CSV formulas
are neutralised, a SIGKILLed agent loses nothing, and a sink that refuses part of a batch parks
only those events.

Real parts only: pty scanners, the test's own mosquitto, real files in `tmp_path`, the agent
in process or as a process that is SIGKILLed; the last test drives a real `Publisher` and
`FileSink` over a real outbox file.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from typing import TYPE_CHECKING, Any

from agent_harness import AgentProcess, running_agent, write_config
from destination_support import file_destination
from support import wait_until

from sync.base import Draft
from sync.files import CSV_COLUMNS, FORMULA_TRIGGERS, FileDestinationConfig, FileSink
from sync.outbox import Outbox
from sync.publisher import Publisher

if TYPE_CHECKING:
    from pathlib import Path

    from support import Broker, Pty


INJECTIONS = ('=HYPERLINK("http://evil.example","open")', "+1+2", "-3-4", "@SUM(A1:A9)")


def complete_csv_rows(content: bytes) -> list[list[str]]:
    """The data rows of a complete CSV drop file; AssertionError if it is partial."""
    assert content.endswith(b"\r\n"), "file does not end with a complete row"
    rows = list(csv.reader(io.StringIO(content.decode("utf-8"), newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[1:], "a file without events"
    for row in rows[1:]:
        assert len(row) == len(CSV_COLUMNS), row
        json.loads(row[-1])
    return rows[1:]


def complete_jsonl_events(content: bytes) -> list[dict[str, Any]]:
    """The events of a complete JSON Lines drop file; AssertionError if it is partial."""
    assert content.endswith(b"\n"), "file does not end with a complete line"
    return [json.loads(line) for line in content.splitlines()]


async def test_file_drop_reader_never_sees_a_partial_file_and_formulas_are_neutralised(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    drop = tmp_path / "drop"
    config = write_config(
        tmp_path,
        broker,
        {"dock-in-1": ("inbound", pty)},
        extra=file_destination(drop, fmt="csv", per_file=3, types='["goods.received"]'),
    )
    seen: dict[str, bytes] = {}  # file name -> content when first seen
    stop = asyncio.Event()

    async def poll_folder() -> None:  # a legacy reader that polls the folder
        while not stop.is_set():
            if drop.exists():
                for path in drop.iterdir():
                    if path.name.startswith("."):
                        continue  # temporary names are not for readers
                    content = path.read_bytes()
                    complete_csv_rows(content)
                    assert seen.setdefault(path.name, content) == content, "file changed"
            await asyncio.sleep(0.001)

    scans = [f"FILE-{i:03d}" for i in range(150)]
    scans[20:20] = INJECTIONS
    async with running_agent(config):
        reader = asyncio.create_task(poll_folder(), name="test-folder-reader")
        try:
            for i, raw in enumerate(scans):
                pty.write(f"{raw}\r\n".encode())
                if i % 10 == 9:
                    await asyncio.sleep(0.005)
            await wait_until(
                lambda: (
                    sum(c.count(b"\r\n") - 1 for c in seen.values()) >= len(scans) or reader.done()
                ),
                what="every scan in a complete file seen by the reader",
            )
        finally:
            stop.set()
            await reader  # raises what the reader found wrong
    names = sorted(seen)
    assert len(names) >= len(scans) // 3
    rows = [row for name in names for row in complete_csv_rows(seen[name])]
    assert [json.loads(r[-1])["raw"] for r in rows] == scans, "in order, once each"
    assert [int(r[1]) for r in rows] == sorted(int(r[1]) for r in rows)
    for row in rows:
        for cell in row:
            assert not cell.startswith(FORMULA_TRIGGERS) or cell.startswith("'"), row
    injected = {json.loads(r[-1])["raw"]: r for r in rows if json.loads(r[-1])["raw"] in INJECTIONS}
    assert set(injected) == set(INJECTIONS)
    for raw, row in injected.items():
        assert row[2] == "goods.received"
        assert json.loads(row[-1])["raw"] == raw  # the value itself is kept, as text


async def test_file_drop_survives_sigkill_without_partial_files_or_loss(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    drop = tmp_path / "drop"
    config = write_config(
        tmp_path,
        broker,
        {"dock-in-1": ("inbound", pty)},
        extra=file_destination(drop, fmt="jsonl", per_file=2, types='["goods.received"]'),
    )
    proc = AgentProcess(config, tmp_path / "agent.log")
    acked = bytearray()
    proc.start()
    try:
        await wait_until(
            lambda: "scanner dock-in-1: connected" in proc.log(), timeout=30, what="agent up"
        )
        for i in range(300):
            pty.write(f"KILL-{i:05d}\r\n".encode())
            if i % 10 == 9:
                await asyncio.sleep(0.005)
                acked.extend(pty.read_available())
            if i == 200:
                await asyncio.sleep(0.01)
                proc.kill()
                break
        acked.extend(pty.read_available())
        good_reads = acked.count(b"\x06")
        assert good_reads > 0
        # right after the kill: every visible file is complete
        for path in drop.glob("[!.]*"):
            complete_jsonl_events(path.read_bytes())
        proc.start()
        await wait_until(
            lambda: proc.log().count("scanner dock-in-1: connected") >= 2,
            timeout=30,
            what="agent restarted",
        )
        pty.write(b"AFTER-RESTART\r\n")
        expected = {f"KILL-{i:05d}" for i in range(good_reads)} | {"AFTER-RESTART"}

        def dropped() -> list[str]:
            return [
                str(e["data"]["raw"])
                for path in sorted(drop.glob("[!.]*"))
                for e in complete_jsonl_events(path.read_bytes())
            ]

        await wait_until(lambda: expected <= set(dropped()), timeout=30, what="all acked dropped")
        assert list(drop.glob(".*")) == [], "leftover temporary files are cleaned up"
    finally:
        if proc.process is not None:
            assert proc.terminate() == 0
    raws = dropped()
    first_seen = list(dict.fromkeys(raws))
    assert first_seen == sorted(first_seen, key=lambda r: (r == "AFTER-RESTART", r)), "in order"
    assert set(first_seen) >= expected


# -- a sink that refuses part of a batch ---------------------------------------------------------


async def test_file_sink_refusing_part_of_a_batch_parks_only_those(tmp_path: Path) -> None:
    """`SinkRejected.ids`: the file sink wrote the rest of the batch; only the named ids park."""
    drop = tmp_path / "drop"
    config = FileDestinationConfig(
        name="qms-drop", kind="file", dir=drop, format="csv", max_events_per_file=4
    )

    def draft(n: int) -> Draft:
        bad = n % 5 == 2  # a payload that is no JSON object cannot be a CSV row
        head, tail = (
            (b'"not an object ', b'"') if bad else (f'{{"id": "ev-{n}", "seq": '.encode(), b"}")
        )
        return Draft(id=f"ev-{n}", route="goods.received", head=head, tail=tail)

    async with Outbox(tmp_path / "o.db", min_free_bytes=0, destinations=["qms-drop"]) as outbox:
        await outbox.append_many([draft(n) for n in range(20)])
        publisher = Publisher(
            outbox, "qms-drop", lambda: FileSink(config), routes=frozenset({"*"}), backoff_cap=0.05
        )
        task = asyncio.create_task(publisher.run(), name="sync:qms-drop")
        try:
            await wait_until(lambda: outbox.cursor("qms-drop") == 20, what="cursor at the end")
            await wait_until(lambda: publisher.health.quarantined == 4, what="four parked")
            parked = await outbox.quarantined("qms-drop")
            health = publisher.health
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert [q.id for q in parked] == ["ev-2", "ev-7", "ev-12", "ev-17"]
    assert all("not a JSON object" in q.reason for q in parked)
    rows = [
        row for path in sorted(drop.glob("*.csv")) for row in complete_csv_rows(path.read_bytes())
    ]
    written = [row[0] for row in rows]
    assert written == [f"ev-{n}" for n in range(20) if n % 5 != 2], "each good one once, in order"
    assert health.delivered == 16
    assert health.last_error is not None
    assert "not a JSON object" in health.last_error
