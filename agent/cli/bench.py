"""`lineside bench`: measures this hardware and broker, prints a table (or `--json`).

One run measures, in this order, with progress on stderr:

- `raw_publish_msgs_per_s`: raw aiomqtt QoS 1 publish, sliding window of 100, no storage;
- `naive_events_per_s`: the naive integrator loop (insert+commit, publish, wait for the PUBACK,
  mark delivered+commit, one event at a time);
- `e2e_events_per_s`: the agent's whole durable path (scan -> interpretation -> outbox commit
  with synchronous=full -> MQTT QoS 1 -> PUBACK -> cursor) with `e2e_scanners` scanners reading
  at once (`--scanners`, default 32), then `p50_ms`/`p99_ms` scan -> PUBACK at a fixed 200
  events/s (and `good_read_p99_ms`, scan -> good-read reply, i.e. committed), then
  `idle_cpu_percent`;
- `intake_events_per_s`: intake alone (scan -> interpretation -> commit, nothing delivered),
  `e2e_scanners` scanners at once;
- `sqlite_inserts_per_s`: raw sqlite3 batched inserts (which also build the backlog);
- `drain_events_per_s` and `peak_rss_mb`: a backlog of 1,000,000 events (`--quick`: 5,000)
  drained by the agent's publisher in a process of its own; `delivery_events_per_s` is the
  same figure under the name of "delivery alone" (outbox -> MQTT -> PUBACK -> cursor);
- `idle_process_cpu_percent`, `paced_cpu_us_per_event_20`, `paced_cpu_us_per_event_100`,
  `saturated_cpu_us_per_event`: a real agent process's CPU (all threads) per event at line
  rates and saturated, measured from outside (`agent.cli.bench_paced`);
- `floor_echo_cpu_us_per_event_<rate>`, `floor_commit_cpu_us_per_event_<rate>`,
  `paced_x_floor_<rate>`: the same rates' CPU per message of a bare asyncio echo process, and of
  one that commits each message to SQLite first, and the agent's figure over the latter
  (`agent.cli.bench_floor`);
- `trace_*`: the trace query figures (`agent.cli.trace_bench.measure_trace`);
- `plc_<protocol>_*`: each PLC protocol's poll rate and p99 through the driver, against the same
  read done raw with the protocol's library (`agent.cli.bench_plcs`);
- ratios `e2e_x_naive`, `e2e_x_raw`, `drain_x_raw`.

Without `--broker` it starts its own mosquitto on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.cli.bench_floor import measure_floor_cpu
from agent.cli.bench_paced import PacedSizes, measure_paced_cpu
from agent.cli.bench_plcs import PROTOCOLS, measure_plc
from agent.cli.bench_runs import (
    measure_e2e,
    measure_intake,
    measure_naive,
    measure_raw_publish,
    write_backlog,
)
from agent.cli.bench_tables import LINE_RATES, render_cpu_table, render_table
from agent.cli.demo_broker import demo_broker
from agent.cli.demo_plcs import enip_available
from agent.cli.trace_bench import measure_trace
from sync.outbox import Outbox

if TYPE_CHECKING:
    import argparse
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much each measurement does."""

    e2e: int
    naive: int
    raw: int
    paced: int
    backlog: int
    idle_s: float
    trace: int
    plc_polls: int


FULL = Sizes(
    e2e=200_000,
    naive=20_000,
    raw=200_000,
    paced=3_000,
    backlog=1_000_000,
    idle_s=5.0,
    trace=100_000,
    plc_polls=2_000,
)
QUICK = Sizes(
    e2e=2_000,
    naive=500,
    raw=2_000,
    paced=100,
    backlog=5_000,
    idle_s=0.5,
    trace=500,
    plc_polls=50,
)
# The agent as a process of its own at line rates (`agent.cli.bench_paced`).
PACED_FULL = PacedSizes(seconds=20.0, idle_s=5.0, saturated=20_000)
PACED_QUICK = PacedSizes(seconds=1.0, idle_s=0.5, saturated=200)
PACED_RATE = 200.0
# Scanners reading at once in the end-to-end run. Each waits for its read's commit (the good-read
# reply), so this sets how full each group commit can be; `--scanners N` measures another site.
# More is not faster end to end: full runs gave 5,935 events/s with 32 and 4,673 with 100,
# although the outbox alone commits faster with 100 appenders (README, `lineside bench`).
SCANNERS = 32


class Progress:
    """One line per step on stderr: what runs, then its figure."""

    def __init__(self, *, enabled: bool = True) -> None:
        self._enabled = enabled
        self._started = time.monotonic()

    def say(self, text: str) -> None:
        """Print a progress line."""
        if self._enabled:
            elapsed = time.monotonic() - self._started
            sys.stderr.write(f"[bench {elapsed:6.1f}s] {text}\n")
            sys.stderr.flush()


@contextlib.asynccontextmanager
async def _broker(url: str | None, workdir: Path) -> AsyncIterator[str]:
    if url is not None:
        yield url
        return
    async with demo_broker(workdir, "mosquitto") as broker:
        yield broker.url


@contextlib.contextmanager
def _workdir(path: str | None) -> Iterator[Path]:
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="lineside-bench-") as tmp:
        yield Path(tmp)


async def _step(
    progress: Progress, what: str, run: Callable[[], Awaitable[float]], unit: str
) -> float:
    progress.say(f"{what} ...")
    value = await run()
    progress.say(f"{what}: {value:,.0f} {unit}")
    return value


async def _drain(path: Path, broker_url: str, events: int) -> dict[str, float]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.cli.bench_drain",
        str(path),
        broker_url,
        str(events),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the drain process failed (exit {process.returncode})")
    result: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def _trace(workdir: Path, events: int, progress: Progress) -> dict[str, float]:
    progress.say(f"trace queries over {events:,} events ...")
    (workdir / "trace").mkdir(exist_ok=True)
    figures = await measure_trace(workdir / "trace", events)
    progress.say("trace: " + ", ".join(f"{k} {v:,.2f}" for k, v in figures.items()))
    return {k if k.startswith("trace") else f"trace_{k}": float(v) for k, v in figures.items()}


async def run_bench(
    *,
    broker_url: str | None,
    workdir: Path,
    quick: bool,
    progress: Progress,
    scanners: int = SCANNERS,
) -> dict[str, float]:
    """Every measurement of one run; the figures by their JSON names."""
    sizes = QUICK if quick else FULL
    figures: dict[str, float] = {}
    async with _broker(broker_url, workdir) as url:
        progress.say(f"broker {url}{'' if broker_url else ' (own mosquitto)'}, dir {workdir}")
        figures["raw_publish_msgs_per_s"] = await _step(
            progress,
            f"raw aiomqtt QoS 1 publish, window 100, {sizes.raw:,} msgs",
            lambda: measure_raw_publish(url, messages=sizes.raw),
            "msg/s",
        )
        figures["naive_events_per_s"] = await _step(
            progress,
            f"naive loop, {sizes.naive:,} events",
            lambda: measure_naive(workdir, url, events=sizes.naive),
            "events/s",
        )
        progress.say(
            f"end to end, {sizes.e2e:,} events from {scanners} scanners,"
            f" then {sizes.paced:,} at 200/s ..."
        )
        e2e = await measure_e2e(
            workdir,
            url,
            events=sizes.e2e,
            rate=PACED_RATE,
            paced=sizes.paced,
            idle_s=sizes.idle_s,
            scanners=scanners,
        )
        figures["e2e_scanners"] = scanners
        figures["e2e_events_per_s"] = e2e.events_per_s
        figures["p50_ms"], figures["p99_ms"] = e2e.p50_ms, e2e.p99_ms
        figures["idle_cpu_percent"] = e2e.idle_cpu_percent
        figures["good_read_p99_ms"] = e2e.good_read_p99_ms
        progress.say(
            f"end to end: {e2e.events_per_s:,.0f} events/s; at 200/s p50 {e2e.p50_ms:.2f} ms"
            f" p99 {e2e.p99_ms:.2f} ms (good read p99 {e2e.good_read_p99_ms:.2f} ms);"
            f" idle CPU {e2e.idle_cpu_percent:.2f} %"
        )
        figures["intake_events_per_s"] = await _step(
            progress,
            f"intake alone (scan -> commit), {sizes.e2e:,} events from {scanners} scanners",
            lambda: measure_intake(workdir, events=sizes.e2e, scanners=scanners),
            "events/s",
        )
        backlog = workdir / "backlog.db"
        async with Outbox(backlog, destinations=["bench"]):
            pass  # the schema
        figures["sqlite_inserts_per_s"] = await _step(
            progress,
            f"raw sqlite3 batched inserts, {sizes.backlog:,} rows (the backlog)",
            lambda: asyncio.to_thread(write_backlog, backlog, events=sizes.backlog),
            "rows/s",
        )
        progress.say(f"draining a {sizes.backlog:,}-event backlog (own process) ...")
        drained = await _drain(backlog, url, sizes.backlog)
        figures.update(drained)
        figures["delivery_events_per_s"] = drained["drain_events_per_s"]
        progress.say(
            f"drain: {drained['drain_events_per_s']:,.0f} events/s,"
            f" peak RSS {drained['peak_rss_mb']:.1f} MB"
        )
        progress.say(
            "the agent as a process of its own: CPU per event at "
            + ", ".join(f"{r:g}/s" for r in LINE_RATES)
            + " and saturated ..."
        )
        paced = await measure_paced_cpu(
            workdir / "paced",
            url,
            rates=LINE_RATES,
            sizes=PACED_QUICK if quick else PACED_FULL,
        )
        figures.update(paced)
        progress.say("CPU per event: " + ", ".join(f"{k} {v:,.0f}" for k, v in paced.items()))
        progress.say("the floor: a bare asyncio echo, and one with a commit, at the same rates ...")
        seconds = (PACED_QUICK if quick else PACED_FULL).seconds
        floor = await measure_floor_cpu(workdir / "floor", rates=LINE_RATES, seconds=seconds)
        figures.update(floor)
        for rate in LINE_RATES:
            commit = floor[f"floor_commit_cpu_us_per_event_{rate:g}"]
            if commit > 0:  # /proc counts CPU in ticks: a quick run may see none
                paced_us = figures[f"paced_cpu_us_per_event_{rate:g}"]
                figures[f"paced_x_floor_{rate:g}"] = paced_us / commit
        progress.say("floor CPU per event: " + ", ".join(f"{k} {v:,.0f}" for k, v in floor.items()))
    figures.update(await _trace(workdir, sizes.trace, progress))
    for protocol in PROTOCOLS:
        if protocol == "enip" and not enip_available():
            progress.say("PLC enip: skipped (the Logix simulator needs cpppo, the demo extra)")
            continue
        progress.say(f"PLC {protocol}: {sizes.plc_polls:,} polls via the driver, then raw ...")
        plc = await measure_plc(protocol, sizes.plc_polls)
        figures.update(plc)
        progress.say(
            f"PLC {protocol}: {plc[f'plc_{protocol}_polls_per_s']:,.0f} polls/s"
            f" p99 {plc[f'plc_{protocol}_p99_ms']:.2f} ms; raw"
            f" {plc[f'plc_{protocol}_raw_polls_per_s']:,.0f} polls/s"
            f" p99 {plc[f'plc_{protocol}_raw_p99_ms']:.2f} ms"
        )
    figures["e2e_x_naive"] = figures["e2e_events_per_s"] / figures["naive_events_per_s"]
    figures["e2e_x_raw"] = figures["e2e_events_per_s"] / figures["raw_publish_msgs_per_s"]
    figures["drain_x_raw"] = figures["drain_events_per_s"] / figures["raw_publish_msgs_per_s"]
    return figures


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}"


def bench_command(args: argparse.Namespace) -> int:
    """`lineside bench [--broker URL] [--json] [--quick] [--dir DIR] [--scanners N]`."""
    progress = Progress()
    if not getattr(args, "debug", False):
        for name in ("agent", "sync"):  # the figures are the output, not open/close lines
            logging.getLogger(name).setLevel(logging.WARNING)
        for name in ("asyncua", "drivers", "enip", "cpppo"):  # the PLC runs' libraries
            logging.getLogger(name).setLevel(logging.ERROR)
    if getattr(args, "plant", False):
        from agent.cli.bench_plant import plant_bench_command  # noqa: PLC0415

        with _workdir(args.dir) as workdir:
            return plant_bench_command(
                workdir, quick=args.quick, as_json=args.json, machine=_machine()
            )
    with _workdir(args.dir) as workdir:
        figures = asyncio.run(
            run_bench(
                broker_url=args.broker,
                workdir=workdir,
                quick=args.quick,
                progress=progress,
                scanners=args.scanners or SCANNERS,
            )
        )
    if args.json:
        sys.stdout.write(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(f"lineside bench on {_machine()}{' (quick)' if args.quick else ''}\n")
        sys.stdout.write(render_table(figures) + "\n")
        if cpu := render_cpu_table(figures):
            sys.stdout.write("\n" + cpu + "\n")
    return 0
