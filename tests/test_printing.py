"""Label printing against the printer simulator: jobs committed first, ~HS decides, no reprints.

A real outbox file, the real `LabelPrinter` task and `ZplPrinterSimulator` on a loopback port:
paper out, head open (answered, or silent as current firmware is), a printer that goes silent
after taking the job, and a process killed with SIGKILL between sending a job and its
confirmation. What was printed is read back from the ZPL and checked with biip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from biip.gs1_messages import GS1Message
from support import wait_until
from zpl_fields import datamatrix_content, read_fields

from agent.alarms import AlarmBoard
from agent.config.printers import PrinterConfig
from agent.events import EventFactory
from agent.printing.checks import PrinterTemplates
from agent.printing.worker import LabelPrinter
from drivers.printers.zpl_sim import ZplPrinterSimulator
from sync.outbox import Outbox

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

ROOT = Path(__file__).resolve().parent.parent
CODE = "(01)09501101530003(10)L261206-01(11)261206(21)000001"


def printer_config(url: str, **extra: Any) -> PrinterConfig:
    return PrinterConfig.model_validate(
        {
            "id": "labeller-1",
            "url": url,
            "status_timeout_ms": 300,
            "connect_attempts": 1,
            "reconnect_max_s": 0.2,
        }
        | extra
    )


def batch_draft(factory: EventFactory, serial: int = 1, line: str = "filler") -> Any:
    code = CODE.replace("(21)000001", f"(21){serial:06d}")
    return factory.draft(
        "batch.completed",
        f"plc:{line}",
        {"trace_code": code, "gtin": "09501101530003", "lot": "L261206-01", "quantity": 12},
    )


async def events(outbox: Outbox, type_: str) -> list[dict[str, Any]]:
    found = await outbox.recent(limit=1000, routes=frozenset({type_}))
    return [json.loads(e.payload) for e in reversed(found)]


async def wait_events(outbox: Outbox, type_: str, count: int = 1) -> list[dict[str, Any]]:
    for _ in range(500):
        found = await events(outbox, type_)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {count} {type_} event(s)")


class Rig:
    """An outbox, a simulated printer and the printer task over them."""

    def __init__(self, outbox: Outbox, sim: ZplPrinterSimulator) -> None:
        self.outbox = outbox
        self.sim = sim
        self.alarms = AlarmBoard()
        self.factory = EventFactory("plant-a", "line-3")
        self.printer = self.new_printer()
        self.task: asyncio.Task[None] | None = None

    def new_printer(self, **extra: Any) -> LabelPrinter:
        return LabelPrinter(
            printer_config(self.sim.url, **extra),
            templates=PrinterTemplates(),
            store=self.outbox,
            factory=self.factory,
            alarms=self.alarms,
            line="filler",
            idle_check_s=0.1,
            retry_cap_s=0.1,
        )

    async def start(self) -> None:
        self.task = asyncio.create_task(self.printer.run())
        await wait_until(lambda: self.printer.book.cursor() is not None, what="printer started")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    def alarm_codes(self) -> set[str | None]:
        return {a.code for a in self.alarms.active()}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with (
        ZplPrinterSimulator() as sim,
        Outbox(tmp_path / "outbox.db", synchronous="normal", min_free_bytes=0) as outbox,
    ):
        rig = Rig(outbox, sim)
        try:
            yield rig
        finally:
            await rig.stop()


async def test_a_completed_batch_prints_its_label_and_the_event_says_so(rig: Rig) -> None:
    await rig.start()
    await rig.outbox.append(batch_draft(rig.factory))
    await rig.outbox.append(batch_draft(rig.factory, 2, line="other-line"))  # not this printer's
    (job,) = await rig.sim.wait_for_jobs(1)
    (printed,) = await wait_events(rig.outbox, "label.printed")
    assert printed["data"] == {
        "printer": "labeller-1",
        "job": 1,
        "kind": "batch",
        "trace_code": CODE,
        "reprint": False,
    }
    (matrix,) = [f for f in read_fields(job) if f.barcode == "BX"]
    gs1, content = datamatrix_content(matrix)
    assert gs1
    assert GS1Message.parse(content.decode()).as_hri() == CODE
    await asyncio.sleep(0.3)
    assert len(rig.sim.jobs) == 1
    assert rig.printer.queued == 0
    assert rig.printer.book.jobs() == {}  # a printed job leaves the committed state


async def test_batches_before_the_printer_was_configured_are_not_printed(rig: Rig) -> None:
    await rig.outbox.append(batch_draft(rig.factory))
    await rig.start()
    await asyncio.sleep(0.3)
    assert rig.sim.jobs == []


async def test_paper_out_fails_with_an_alarm_and_the_label_prints_when_paper_is_back(
    rig: Rig,
) -> None:
    rig.sim.paper_out = True
    await rig.start()
    await rig.outbox.append(batch_draft(rig.factory))
    (failed,) = await wait_events(rig.outbox, "label.failed")
    assert failed["data"]["reason"] == "paper out"
    assert failed["data"]["job"] == 1
    assert "printer.fault" in rig.alarm_codes()
    await rig.outbox.append(batch_draft(rig.factory, 2))  # batches keep being committed
    await asyncio.sleep(0.3)
    assert rig.sim.jobs == []  # a printer that says it cannot print never gets the job
    assert len(await events(rig.outbox, "label.failed")) == 1  # once, not once per retry
    rig.sim.paper_out = False
    printed = await wait_events(rig.outbox, "label.printed", 2)
    assert [p["data"]["job"] for p in printed] == [1, 2]
    assert len(rig.sim.jobs) == 2
    assert "printer.fault" not in rig.alarm_codes()


async def test_an_unreachable_printer_fails_the_label_with_an_alarm(rig: Rig) -> None:
    await rig.sim.stop()  # nobody listens on its port now
    await rig.start()
    await rig.outbox.append(batch_draft(rig.factory))
    (failed,) = await wait_events(rig.outbox, "label.failed")
    assert failed["data"]["reason"] == "unreachable"
    assert "Connection refused" in failed["data"]["detail"]
    assert "printer.fault" in rig.alarm_codes()
    await rig.sim.start()  # the printer is switched on again: the label comes out
    await wait_events(rig.outbox, "label.printed")
    assert len(rig.sim.jobs) == 1


@pytest.mark.parametrize("silent", [False, True], ids=["answered", "silent"])
async def test_head_open_is_a_fault_whether_answered_or_silent(rig: Rig, silent: bool) -> None:
    rig.sim.head_open = True
    rig.sim.silent_on_fault = silent
    await rig.start()
    await rig.outbox.append(batch_draft(rig.factory))
    (failed,) = await wait_events(rig.outbox, "label.failed")
    assert failed["data"]["reason"] == ("no answer" if silent else "head open")
    assert rig.sim.jobs == []
    rig.sim.head_open = False
    await wait_events(rig.outbox, "label.printed")
    assert len(rig.sim.jobs) == 1


async def test_silence_after_sending_leaves_the_job_undecided_until_a_person_decides(
    rig: Rig,
) -> None:
    def go_silent(_job: bytes) -> None:
        rig.sim.silent = True

    rig.sim.on_job = go_silent
    await rig.start()
    await rig.outbox.append(batch_draft(rig.factory))
    (failed,) = await wait_events(rig.outbox, "label.failed")
    assert failed["data"]["reason"] == "no answer"
    await wait_until(lambda: "label.undecided" in rig.alarm_codes(), what="undecided alarm")
    rig.sim.silent = False
    rig.sim.on_job = None
    await asyncio.sleep(0.5)
    assert len(rig.sim.jobs) == 1  # never printed again by itself
    assert [(j.job, j.reason) for j in rig.printer.undecided()] == [(1, "no answer")]

    await rig.printer.decide(1, "reprint")
    (printed,) = await wait_events(rig.outbox, "label.printed")
    assert printed["data"]["reprint"] is True
    assert printed["data"]["job"] == 1
    assert len(rig.sim.jobs) == 2
    assert rig.sim.jobs[0] == rig.sim.jobs[1]
    assert "label.undecided" not in rig.alarm_codes()
    with pytest.raises(ValueError, match="no undecided job 1"):
        await rig.printer.decide(1, "void")


async def test_void_closes_an_undecided_job_without_printing_it(rig: Rig) -> None:
    rig.sim.on_job = lambda _job: setattr(rig.sim, "silent", True)
    await rig.start()
    await rig.outbox.append(batch_draft(rig.factory))
    await wait_until(lambda: bool(rig.printer.undecided()), what="undecided job")
    rig.sim.silent = False
    rig.sim.on_job = None
    await rig.printer.decide(1, "void")
    assert rig.printer.undecided() == []
    assert rig.printer.book.jobs() == {}
    await asyncio.sleep(0.3)
    assert len(rig.sim.jobs) == 1


async def test_a_printer_task_restarted_mid_job_never_sends_that_job_again(rig: Rig) -> None:
    rig.printer = rig.new_printer(status_timeout_ms=60000)
    rig.sim.on_job = lambda _job: setattr(rig.sim, "silent", True)
    await rig.start()
    await rig.outbox.append(batch_draft(rig.factory))
    await rig.sim.wait_for_jobs(1)  # sent; no confirmation comes
    await rig.stop()  # as the supervisor's restart after a failure, or a shutdown
    rig.sim.silent = False
    rig.sim.on_job = None
    await rig.start()
    (failed,) = await wait_events(rig.outbox, "label.failed")
    assert failed["data"]["reason"] == "interrupted"
    await asyncio.sleep(0.3)
    assert len(rig.sim.jobs) == 1
    assert [j.job for j in rig.printer.undecided()] == [1]


_KILLED_AGENT = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {tests!r})
    from test_printing import Rig, batch_draft
    from drivers.printers.zpl_sim import ZplPrinterSimulator
    from sync.outbox import Outbox
    from pathlib import Path

    async def main():
        sim = ZplPrinterSimulator(port={port})  # not started: only its url is used
        async with Outbox(Path({db!r}), synchronous="full", min_free_bytes=0) as outbox:
            rig = Rig(outbox, sim)
            rig.printer = rig.new_printer(status_timeout_ms=60000)
            await rig.start()
            await outbox.append(batch_draft(rig.factory))
            print("appended", flush=True)
            await asyncio.Event().wait()

    asyncio.run(main())
    """
)


async def test_a_job_interrupted_by_kill_9_between_send_and_confirmation_is_never_reprinted(
    tmp_path: Path,
) -> None:
    db = tmp_path / "outbox.db"
    async with ZplPrinterSimulator() as sim:
        sim.on_job = lambda _job: setattr(sim, "silent", True)
        script = _KILLED_AGENT.format(tests=str(ROOT / "tests"), port=sim.port, db=str(db))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT)  # noqa: ASYNC220
        try:
            await sim.wait_for_jobs(1, timeout=30)  # sent; its ~HS is never answered
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        sim.silent = False
        sim.on_job = None
        async with Outbox(db, synchronous="normal", min_free_bytes=0) as outbox:
            rig = Rig(outbox, sim)
            await rig.start()
            (failed,) = await wait_events(outbox, "label.failed")
            assert failed["data"]["reason"] == "interrupted"
            assert failed["data"]["reprint"] is False
            await asyncio.sleep(0.5)
            assert len(sim.jobs) == 1
            assert [j.job for j in rig.printer.undecided()] == [1]
            assert "label.undecided" in rig.alarm_codes()
            await rig.printer.decide(1, "reprint")
            (printed,) = await wait_events(outbox, "label.printed")
            assert printed["data"]["reprint"] is True
            assert len(sim.jobs) == 2
            await rig.stop()


def _check_config(tmp_path: Path, printer: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "lineside.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [agent]
            site = "plant-a"
            node = "line-3"
            data_dir = "{tmp_path / "data"}"
            [[destinations]]
            name = "files"
            kind = "file"
            dir = "{tmp_path / "out"}"
            """
        )
        + printer
    )
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=ROOT,
    )


def test_check_config_refuses_a_template_with_an_unknown_field(tmp_path: Path) -> None:
    template = tmp_path / "batch.zpl"
    template.write_text("^XA^FO10,10^A0N,30,30^FH\\^FD{lot} {best_before}^FS^XZ")
    printer = '[[printers]]\nid = "labeller-1"\nurl = "tcp://127.0.0.1:9100"\n'
    printer += f'template = "{template}"\n'
    done = _check_config(tmp_path, printer)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "printers[0].template:" in done.stderr
    assert "unknown field(s) best_before" in done.stderr

    template.write_text("^XA^FO10,10^A0N,30,30^FH\\^FD{lot} {serial}^FS^XZ")
    done = _check_config(tmp_path, printer)
    assert done.returncode == 0, done.stdout + done.stderr


def test_check_config_refuses_a_printer_url_that_is_no_tcp_port(tmp_path: Path) -> None:
    done = _check_config(tmp_path, '[[printers]]\nid = "p"\nurl = "http://10.0.0.30"\n')
    assert done.returncode == 2
    assert "printers[0].url" in done.stderr


CONTRACT_BLOCK = (ROOT / "tests" / "data" / "contracts-printing.toml").read_text()


def test_the_contract_block_is_accepted_with_a_scanner_link_and_a_line() -> None:
    """CONTRACTS.md "Label printers and packing", as written (plus what any file needs)."""
    from agent.config.root import parse_config  # noqa: PLC0415

    text = (
        textwrap.dedent(
            """
        [agent]
        site = "plant-a"
        node = "line-3"
        [[destinations]]
        name = "files"
        kind = "file"
        dir = "/tmp/lineside-unused"
        [[plcs]]
        id = "filler-a"
        protocol = "modbus-tcp"
        host = "127.0.0.1"
        [plcs.batch]
        trigger = "coil:0"
        """
        )
        + CONTRACT_BLOCK
        + 'url = "socket://127.0.0.1:1"\n'
    )
    import tomllib  # noqa: PLC0415

    config = parse_config(tomllib.loads(text))
    (printer,) = config.printers
    assert (printer.id, printer.host, printer.port, printer.line) == (
        "labeller-1",
        "10.0.0.30",
        9100,
        "filler-a",
    )
    assert config.packing.company_prefix == "0950110"
    assert config.scanners[0].printer == "labeller-1"
