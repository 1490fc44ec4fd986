"""The ZPL printer driver against the printer simulator (and a few raw TCP peers of our own)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from pydantic import ValidationError
from support import free_port, wait_until

from agent.labels import batch_label
from drivers.base import DeviceDisconnected, DeviceProtocolError, DeviceUnavailable
from drivers.printers.host_status import (
    MAX_ANSWER_BYTES,
    HostStatus,
    PrinterSilent,
    answer_complete,
    format_host_status,
    parse_host_status,
)
from drivers.printers.zpl import ZplPrinter, ZplPrinterSettings
from drivers.printers.zpl_sim import ZplPrinterSimulator, _Splitter

JOB = b"^XA^FO20,20^A0N,30,30^FDhello^FS^XZ"
FLAGS = {
    "paper_out": "paper out",
    "ribbon_out": "ribbon out",
    "head_open": "head open",
    "paused": "paused",
}


@pytest.fixture
async def sim() -> AsyncIterator[ZplPrinterSimulator]:
    async with ZplPrinterSimulator() as s:
        yield s


def printer(url: str, **settings: float) -> ZplPrinter:
    defaults: dict[str, float] = {"status_timeout_ms": 300, "reconnect_max_s": 0.05}
    return ZplPrinter(
        "labeller-1",
        ZplPrinterSettings(url=url, **(defaults | settings)),
        backoff_base_s=0.01,
    )


async def test_a_ready_printer_prints_and_confirms(sim: ZplPrinterSimulator) -> None:
    p = printer(sim.url)
    try:
        outcome = await p.print_and_confirm(JOB)
        assert (outcome.printed, outcome.sent, outcome.reason) == (True, True, None)
        assert outcome.status is not None
        assert outcome.status.faults == ()
        assert sim.jobs == [JOB]
        assert sim.status_requests == 2  # asked before sending and after
        assert p.health.connected
        assert p.health.readings == 2
        assert p.health.errors == 0
    finally:
        await p.close()


async def test_a_real_label_job_arrives_whole(sim: ZplPrinterSimulator) -> None:
    job = batch_label("(01)09501101530003(10)LINE32611241(11)261124(21)000001")
    async with printer(sim.url) as p:
        assert (await p.print_and_confirm(job)).printed
        await p.send(job)
        assert await sim.wait_for_jobs(2) == [job.rstrip()] * 2  # ^XA … ^XZ


@pytest.mark.parametrize(("flag", "reason"), FLAGS.items())
async def test_a_fault_before_sending_keeps_the_job(
    sim: ZplPrinterSimulator, flag: str, reason: str
) -> None:
    setattr(sim, flag, True)
    async with printer(sim.url) as p:
        outcome = await p.print_and_confirm(JOB)
        assert (outcome.printed, outcome.sent, outcome.reason) == (False, False, reason)
        assert outcome.detail == f"printer labeller-1: {reason}"
        assert p.health.last_error == outcome.detail
        setattr(sim, flag, False)
        assert (await p.print_and_confirm(JOB)).printed
    assert sim.jobs == [JOB]  # the refused job never reached the printer


@pytest.mark.parametrize(("flag", "reason"), FLAGS.items())
async def test_a_fault_while_printing_fails_a_sent_job(
    sim: ZplPrinterSimulator, flag: str, reason: str
) -> None:
    sim.on_job = lambda _job: setattr(sim, flag, True)
    async with printer(sim.url) as p:
        outcome = await p.print_and_confirm(JOB)
    assert (outcome.printed, outcome.sent, outcome.reason) == (False, True, reason)
    assert sim.jobs == [JOB]


async def test_paper_out_and_paused_together_name_the_cause_first(
    sim: ZplPrinterSimulator,
) -> None:
    sim.paused = sim.paper_out = True
    async with printer(sim.url) as p:
        outcome = await p.print_and_confirm(JOB)
    assert outcome.reason == "paper out"
    assert outcome.detail == "printer labeller-1: paper out, paused"


async def test_silence_is_no_answer_not_success(sim: ZplPrinterSimulator) -> None:
    sim.silent = True
    async with printer(sim.url) as p:
        outcome = await p.print_and_confirm(JOB)
        assert (outcome.printed, outcome.sent, outcome.reason) == (False, False, "no answer")
        assert not p.health.connected  # a late answer must never pass for the next one
        assert p.health.last_error == "no answer to ~HS within 300 ms"
        sim.silent = False
        assert (await p.print_and_confirm(JOB)).printed
    assert sim.jobs == [JOB]


async def test_silence_after_sending_fails_the_sent_job(sim: ZplPrinterSimulator) -> None:
    sim.silent_on_fault = True  # current firmware: no answer while out of media
    sim.on_job = lambda _job: setattr(sim, "paper_out", True)
    async with printer(sim.url) as p:
        outcome = await p.print_and_confirm(JOB)
        assert (outcome.printed, outcome.sent, outcome.reason) == (False, True, "no answer")
        assert outcome.status is not None  # the answer from before sending
        state = await p.state()
        assert (state.ready, state.reason) == (False, "no answer")


async def test_connection_refused_is_unreachable() -> None:
    p = printer(f"tcp://127.0.0.1:{free_port()}", connect_attempts=3)
    outcome = await p.print_and_confirm(JOB)
    assert (outcome.printed, outcome.sent, outcome.reason) == (False, False, "unreachable")
    assert outcome.detail is not None
    assert "refused" in outcome.detail.lower()
    assert not p.health.connected
    assert p.health.errors == 3  # one per attempt
    with pytest.raises(DeviceUnavailable, match="cannot connect"):
        await p.connect()


async def test_a_printer_that_hangs_up_is_a_lost_connection(sim: ZplPrinterSimulator) -> None:
    sim.hang_up = True
    p = printer(sim.url, connect_attempts=2)
    outcome = await p.print_and_confirm(JOB)
    assert (outcome.printed, outcome.sent, outcome.reason) == (False, False, "connection lost")
    assert sim.connections == 2
    assert sim.jobs == []


async def test_a_restarted_printer_is_reconnected(sim: ZplPrinterSimulator) -> None:
    async with printer(sim.url) as p:
        assert (await p.print_and_confirm(JOB)).printed
        await sim.stop()  # switched off: our link is stale
        outcome = await p.print_and_confirm(JOB)
        assert (outcome.reason, outcome.sent) == ("unreachable", False)
        await sim.start()  # back on the same port
        assert (await p.print_and_confirm(JOB)).printed
        assert p.health.reconnects == 1
    assert sim.jobs == [JOB, JOB]


async def test_a_restart_between_jobs_needs_no_failure(sim: ZplPrinterSimulator) -> None:
    async with printer(sim.url) as p:
        assert (await p.print_and_confirm(JOB)).printed
        await sim.stop()
        await sim.start()
        assert (await p.print_and_confirm(JOB)).printed  # the stale link is found and replaced
    assert sim.connections == 2


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_printer(handler: Handler) -> AsyncIterator[str]:
    """A TCP peer of our own that runs `handler` per connection; yields its URL."""
    handlers: set[asyncio.Task[None]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        except OSError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(run, "127.0.0.1", 0)
    try:
        yield f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()
        if handlers:
            async with asyncio.timeout(10):
                await asyncio.wait(handlers)


async def test_an_endless_answer_is_cut_off_and_refused() -> None:
    async def babble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(3)
        writer.write(b"\x02" + b"0" * 10_000)
        await writer.drain()
        await reader.read(1)  # until the driver hangs up

    async with raw_printer(babble) as url, printer(url) as p:
        with pytest.raises(DeviceProtocolError, match=f"longer than {MAX_ANSWER_BYTES}"):
            await p.host_status()
        outcome = await p.print_and_confirm(JOB)
        assert (outcome.reason, outcome.sent) == ("bad answer", False)


async def test_garbage_is_a_bad_answer() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(64):
            writer.write(b"\x02hello\x03\r\n\x02,,\x03\r\n\x02x\x03\r\n")

    async with raw_printer(garbage) as url, printer(url) as p:
        with pytest.raises(DeviceProtocolError, match="not a host status answer"):
            await p.host_status()


async def test_send_and_host_status_need_a_link(sim: ZplPrinterSimulator) -> None:
    p = printer(sim.url)
    with pytest.raises(DeviceDisconnected, match="not connected"):
        await p.send(JOB)
    async with p:
        status = await p.host_status()
        assert status.faults == ()
        sim.silent = True
        with pytest.raises(PrinterSilent, match="no answer to ~HS within 300 ms"):
            await p.host_status()
        with pytest.raises(DeviceDisconnected):
            await p.host_status()


async def test_cancelling_an_exchange_drops_the_link(sim: ZplPrinterSimulator) -> None:
    sim.silent = True
    async with printer(sim.url, status_timeout_ms=60_000) as p:
        task = asyncio.create_task(p.host_status())
        await wait_until(lambda: sim.status_requests == 1, what="the status request")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not p.connected


def test_host_status_of_a_real_answer() -> None:
    # A ZD-series printer, paused with the head open, 1218-dot labels, 3 formats queued.
    answer = (
        b"\x02030,0,1,1218,003,0,0,0,000,0,0,0\x03\r\n"
        b"\x02001,0,1,0,1,2,6,0,00000000,1,000\x03\r\n"
        b"\x021234,0\x03\r\n"
    )
    assert answer_complete(answer)
    status = parse_host_status(answer)
    assert status.paused
    assert status.head_open
    assert not status.paper_out
    assert status.label_length_dots == 1218
    assert status.formats_in_buffer == 3
    assert status.thermal_transfer
    assert status.print_mode == 2
    assert status.faults == ("head open", "paused")


def test_host_status_round_trip_and_partial_answers() -> None:
    status = HostStatus(
        paper_out=True,
        paused=True,
        label_length_dots=609,
        formats_in_buffer=1,
        buffer_full=True,
        partial_format=True,
        corrupt_ram=True,
        under_temperature=True,
        over_temperature=True,
        head_open=False,
        ribbon_out=True,
        thermal_transfer=True,
        print_mode=3,
        labels_remaining=12,
    )
    answer = format_host_status(status)
    assert parse_host_status(answer) == status
    assert status.faults == ("paper out", "ribbon out", "head too hot", "buffer full", "paused")
    assert not answer_complete(answer[:-12])
    with pytest.raises(DeviceProtocolError):
        parse_host_status(answer[:-12])
    with pytest.raises(DeviceProtocolError):
        parse_host_status(b"junk" + answer)


def test_the_simulator_splits_jobs_across_chunks() -> None:
    stream = b"~HS^XA^FDa^FS^XZ^XA^FD~HS-in-a-format^FS^XZ" * 2
    for size in (1, 2, 3, 7, len(stream)):
        splitter = _Splitter()
        found = []
        for i in range(0, len(stream), size):
            found += splitter.feed(stream[i : i + size])
        assert found == [None, b"^XA^FDa^FS^XZ", None, b"^XA^FD~HS-in-a-format^FS^XZ"] * 2


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [("tcp://10.0.0.30:9100", "10.0.0.30", 9100), ("tcp://labeller.local", "labeller.local", 9100)],
)
def test_settings(url: str, host: str, port: int) -> None:
    settings = ZplPrinterSettings(url=url)
    assert (settings.kind, settings.host, settings.port) == ("zpl", host, port)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.30:9100",
        "tcp://:9100",
        "tcp://h:0",
        "tcp://h:99999",
        "10.0.0.30",
        "tcp://h/x",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="url"):
        ZplPrinterSettings(url=url)


async def test_the_simulator_runs_on_its_own() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "drivers.printers.zpl_sim",
        "--port",
        str(port),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            line = await proc.stdout.readline()
        assert line.decode().strip() == f"ZPL printer simulator on tcp://127.0.0.1:{port}"
        async with printer(f"tcp://127.0.0.1:{port}") as p:
            assert (await p.print_and_confirm(JOB)).printed
    finally:
        proc.terminate()
        async with asyncio.timeout(10):
            await proc.wait()
