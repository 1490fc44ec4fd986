"""Random trace-code serials: digits from the OS CSPRNG, unique against history, across kill -9.

`line.serial_mode = "random"`: every serial is `serial_width` digits (12 unless set higher,
never fewer), a drawn serial already in the history of its GTIN is drawn again, and an agent
killed with SIGKILL over and over (at the batch's commit, and at random instants) never uses a
serial twice nor gives one batch two codes.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import sqlite3
from functools import partial
from typing import TYPE_CHECKING, Any

import pytest
from agent_harness import AgentProcess, write_config
from support import wait_until
from test_batches import EDGE, Bench, MemoryPlc, poll
from test_e2e_batches import plc_section, tcp

from agent.config import ConfigError
from agent.config.root import parse_config
from drivers.simulators.modbus_plc import FillingLineSimulator

if TYPE_CHECKING:
    import subprocess
    from collections.abc import AsyncIterator
    from pathlib import Path

    from support import Broker

BASE: dict[str, Any] = {
    "agent": {"site": "a", "node": "b"},
    "destinations": [{"name": "f", "kind": "file", "dir": "/tmp/lineside-unused"}],
}


def test_random_serials_are_at_least_12_digits() -> None:
    assert parse_config({**BASE, "line": {"serial_mode": "random"}}).line.serial_width == 12
    wide = {"serial_mode": "random", "serial_width": 16}
    assert parse_config({**BASE, "line": wide}).line.serial_width == 16
    with pytest.raises(ConfigError, match="at least 12 when serial_mode is random"):
        parse_config({**BASE, "line": {"serial_mode": "random", "serial_width": 8}})
    assert parse_config(BASE).line.serial_mode == "sequential"


async def test_random_serials_are_drawn_again_when_history_has_them(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = await bench.tracker(EDGE, serial_mode="random")
    plc = MemoryPlc()
    await tracker.on_poll(poll(False), plc, fresh_link=False)
    for _ in range(5):
        await tracker.on_poll(poll(True), plc, fresh_link=False)
        await tracker.on_poll(poll(False), plc, fresh_link=False)
    codes = await bench.codes()
    serials = [c.rsplit("(21)", 1)[1] for c in codes]
    assert len(set(serials)) == 5
    assert all(len(s) == 12 and s.isdigit() for s in serials)

    # the generator "repeats" the first serial twice, then gives a new one: only that is used
    draws = iter([int(serials[0]), int(serials[0]), 123])
    monkeypatch.setattr(secrets, "randbelow", lambda _n: next(draws))
    await tracker.on_poll(poll(True), plc, fresh_link=False)
    assert (await bench.codes())[-1].endswith("(21)000000000123")


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    b = Bench(tmp_path / "outbox.db")
    await b.open()
    try:
        yield b
    finally:
        await b.close()


def _died_or_stamped(process: subprocess.Popen[bytes], sim: FillingLineSimulator, n: int) -> bool:
    return process.poll() is not None or sim.batches_completed > n


def serials_in(db: Path) -> list[tuple[str, int]]:
    """(serial, PLC batch counter) of every batch.completed in the outbox file."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT json_extract(payload, '$.data.serial'),"
            " json_extract(payload, '$.data.params.batch_no')"
            " FROM events WHERE route = 'batch.completed' ORDER BY seq"
        ).fetchall()
    return [(str(s), int(n)) for s, n in rows]


async def test_random_serials_are_never_reused_across_a_sigkill_storm(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(7)
    async with FillingLineSimulator(
        port=0, auto=True, seed=5, units_per_s=40, batch_units=4
    ) as sim:
        section = plc_section(tcp(sim), poll_ms=20).replace(
            "[line]\n", '[line]\nserial_mode = "random"\n'
        )
        config = write_config(tmp_path, broker, {}, extra=section, store='synchronous = "full"')
        proc = AgentProcess(config, tmp_path / "agent.log")
        for life in range(8):
            if life % 2 == 0:
                monkeypatch.setenv("LINESIDE_FAULT", "batch.after_commit")
            proc.start()
            monkeypatch.delenv("LINESIDE_FAULT", raising=False)
            before = sim.batches_completed
            process = proc.process
            assert process is not None
            await wait_until(
                partial(_died_or_stamped, process, sim, before),
                timeout=30,
                what="a batch, or the fault point's kill",
            )
            await asyncio.sleep(rng.uniform(0, 0.3))
            if process.poll() is None:
                proc.kill()
            proc.process = None
        proc.start()
        before = sim.batches_completed
        await wait_until(lambda: sim.batches_completed >= before + 2, timeout=30, what="batches")
        assert proc.terminate() == 0
    found = serials_in(tmp_path / "data" / "outbox.db")
    serials = [s for s, _ in found]
    assert len(found) >= 5
    assert len(set(serials)) == len(serials)  # no serial used twice
    assert all(len(s) == 12 and s.isdigit() for s in serials)
    batch_numbers = [n for _, n in found]
    assert len(set(batch_numbers)) == len(batch_numbers)  # no batch with two codes


def test_packing_stations_need_a_company_prefix_and_a_known_printer() -> None:
    scanners = [
        {"id": f"pack-{i}", "role": "packing", "url": "socket://127.0.0.1:1", "printer": "lab"}
        for i in (1, 2)
    ]
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, "scanners": scanners})
    problems = caught.value.problems
    assert len(problems) == 3  # one company prefix problem, whatever the stations
    assert problems[0].endswith(
        "packing.company_prefix: required: scanners[0] is a packing station, which numbers "
        "SSCCs with it (7 to 10 digits)"
    )
    assert problems[1:] == [
        "scanners[0].printer: no printer 'lab' (printers: none)",
        "scanners[1].printer: no printer 'lab' (printers: none)",
    ]


def test_a_company_prefix_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, "packing": {"company_prefix": "12345"}})
    assert caught.value.problems == [
        "packing.company_prefix: must be 7 to 10 digits (a GS1 company prefix), got '12345'"
    ]
