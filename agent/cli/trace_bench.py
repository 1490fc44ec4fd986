"""The trace-query figures of `lineside bench`: a realistic outbox of N events, query timings.

The history is what a line and its docks produce: material pallets received (SSCC with
content GTIN, lot and count), cartons of them consumed into batches, batches started and
completed with trace codes, and pallets of each batch shipped. Keys are the ones the agent
indexes for real events, so lookups walk the same indexes at the same fan-out.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

from agent.events import EventFactory
from agent.history.reader import HistoryReader
from agent.history.trace import trace
from sync.outbox import Outbox

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from sync.base import Draft

PRODUCT = "09501101530003"
MATERIALS = ("09501101530010", "09501101530027")
CHUNK = 5000
RUNS = 3


def check_digit(body: str) -> str:
    """The GS1 mod-10 check digit of `body` (weights 3, 1 from the right)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def sscc(n: int) -> str:
    """A valid SSCC: extension 0, company prefix 0950110, serial reference `n`."""
    body = f"00950110{n:09d}"
    return body + check_digit(body)


def _scan(gtin: str, lot: str, *, serial: str | None = None, pallet: int | None = None) -> Any:
    data: dict[str, Any] = {"symbology": "GS1-128", "gtin": gtin, "lot": lot}
    keys = [("gtin", gtin), ("lot", lot), ("gtin_lot", f"{gtin}|{lot}")]
    if serial is not None:
        data["serial"] = serial
        keys.append(("serial", f"{gtin}|{serial}"))
        data["raw"] = f"]C101{gtin}10{lot}\x1d21{serial}"
    if pallet is not None:
        code = sscc(pallet)
        data |= {"sscc": code, "quantity": 40}
        keys.append(("sscc", code))
        data["raw"] = f"]C100{code}02{gtin}3740\x1d10{lot}"
    return data, keys


def _drafts(total: int) -> Iterator[Draft]:
    factory = EventFactory("plant-a", "line-3")
    made, batch, pallet = 0, 0, 0
    while made < total:
        batch += 1
        material_lots = [f"M{batch // 5:06d}{c}" for c in "AB"]
        lot = f"L{batch:07d}"
        cycle: list[tuple[str, str, Any]] = []
        if batch % 5 == 1:
            for gtin, mlot in zip(MATERIALS, material_lots, strict=True):
                pallet += 1
                cycle.append(
                    ("goods.received", "scanner:dock-in-1", _scan(gtin, mlot, pallet=pallet))
                )
        started = {"work_order": f"WO-{batch // 20}", "gtin": PRODUCT, "lot": lot}
        cycle.append(("batch.started", "plc:filler", (started, [("lot", lot)])))
        materials = []
        for i in range(8):
            gtin, mlot = MATERIALS[i % 2], material_lots[i % 2]
            data, keys = _scan(gtin, mlot, serial=f"{batch:07d}{i}")
            materials.append({k: data[k] for k in ("gtin", "lot", "serial")})
            cycle.append(("material.consumed", "scanner:line-1", ({**data, "batch": lot}, keys)))
        serial = f"{batch:06d}"
        code = f"(01){PRODUCT}(10){lot}(11)261124(21){serial}"
        completed = {
            "trace_code": code,
            "digital_link": f"https://id.gs1.org/01/{PRODUCT}/21/{serial}?10={lot}&11=261124",
            "work_order": started["work_order"],
            "gtin": PRODUCT,
            "lot": lot,
            "serial": serial,
            "quantity": 240,
            "params": {"fill_temp_c": 4.0, "line_speed": 120},
            "materials": materials,
            "started": "2026-11-24T08:00:00.000Z",
            "completed": "2026-11-24T08:30:00.000Z",
            "shift": "early",
            "operator": "OP-17",
        }
        keys = [("trace_code", code), ("lot", lot), ("gtin_lot", f"{PRODUCT}|{lot}")]
        keys += [("serial", f"{PRODUCT}|{serial}"), ("work_order", started["work_order"])]
        cycle.append(("batch.completed", "plc:filler", (completed, keys)))
        for _ in range(6):
            pallet += 1
            cycle.append(
                ("goods.shipped", "scanner:dock-out-1", _scan(PRODUCT, lot, pallet=pallet))
            )
        for type_, source, (data, keys) in cycle[: total - made]:
            yield factory.draft(type_, source, data, keys=keys)
        made += len(cycle)


async def build_history(path: Path, events: int) -> tuple[float, dict[str, str]]:
    """Write `events` events to a new outbox at `path`; seconds taken and queries to probe."""
    start = time.perf_counter()
    async with Outbox(path, synchronous="normal", min_free_bytes=0) as outbox:
        chunk: list[Draft] = []
        for draft in _drafts(events):
            chunk.append(draft)
            if len(chunk) == CHUNK:
                await outbox.append_many(chunk)
                chunk = []
        await outbox.append_many(chunk)
    build_s = time.perf_counter() - start
    batch = max(1, events // 20 // 2)  # a batch from the middle of the history
    lot, serial = f"L{batch:07d}", f"{batch:06d}"
    probes = {
        "trace_code": f"(01){PRODUCT}(10){lot}(11)261124(21){serial}",
        "digital_link": f"https://id.gs1.org/01/{PRODUCT}/21/{serial}?10={lot}",
        "sscc": sscc(max(1, (events // 20) * 7 // 2)),
        "lot": lot,
        "material_lot": f"(01){MATERIALS[0]}(10)M{batch // 5:06d}A",
    }
    return build_s, probes


async def time_queries(path: Path, probes: dict[str, str]) -> dict[str, float]:
    """Seconds per query kind (median of a few runs, each opening the history read-only)."""
    figures: dict[str, float] = {}
    for name, query in probes.items():
        runs = []
        for _ in range(RUNS):
            start = time.perf_counter()
            async with HistoryReader(path) as history:
                await trace(history, query)
            runs.append(time.perf_counter() - start)
        figures[f"{name}_s"] = statistics.median(runs)
    figures["max_query_s"] = max(figures.values())
    return figures


async def measure_trace(workdir: Path, events: int) -> dict[str, float]:
    """Build a history of `events` realistic events in `workdir` and time trace queries.

    Returns seconds: `build_s` (writing the history), and per query kind (`trace_code_s`,
    `sscc_s`, `lot_s`, `material_lot_s`, `digital_link_s`), plus `max_query_s` and `events`.
    """
    path = workdir / "trace-bench.db"
    build_s, probes = await build_history(path, events)
    figures = {"events": float(events), "build_s": build_s}
    figures |= await time_queries(path, probes)
    return figures
