"""Fuzzing scan interpretation: every input is a valid event or `scan.rejected` with a reason.

`interpret` has a last-resort guard that turns an unexpected exception into a rejection
("unparseable: ..."); the fuzzer counts hitting that guard as a crash, since it means a bug met
on odd input. Short: a few thousand examples; long (`make faults`): a million. The slowest
input's time is printed, not asserted (speed is for benchmarks). The long run also hands the
same promise to atheris (libFuzzer, coverage-guided) for a million inputs, when it is installed
(`pip install atheris`; target in `fuzz_scans_atheris.py`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config.scanners import StationRole
from agent.scanning.interpret import BadgeScan, StationRules, WorkOrderScan, interpret
from faults.conftest import LONG, size
from faults.oracle import Counts

if TYPE_CHECKING:
    from collections.abc import Callable

VALID_TYPES = {"goods.received", "goods.shipped", "material.consumed", "scan.rejected"}
STATIONS = [  # every role, and a line with its work-order and badge prefixes
    *(StationRules(role) for role in StationRole),
    StationRules(StationRole.LINE, line="filler", work_order_prefix="WO:", operator_prefix="OP:"),
]
PREFIXES = [
    "",
    "WO:",
    "OP:",
    "]C1",
    "]d2",
    "]Q3",
    "]e0",
    "]E0",
    "]Q1",
    "]A0",
    "]I1",
    "https://id.gs1.org/01/",
]
GS1_ALPHABET = "0123456789ABCXYZ\x1d()/?=.-%&\r\n\x00\x7f é中"

reads = st.one_of(
    st.binary(max_size=700),
    st.builds(
        lambda p, b, t: (p + b).encode() + t,
        st.sampled_from(PREFIXES),
        st.text(alphabet=GS1_ALPHABET, max_size=120),
        st.sampled_from([b"", b"\xff", b"\x1d", b"\x80\x80"]),
    ),
)


async def test_fuzzed_reads_become_events_or_reasoned_rejections(
    report: Callable[[str, Counts], None],
) -> None:
    examples = size(3000, 1_000_000)
    seen = Counts()
    slowest = [0.0]
    crashes: list[bytes] = []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(raw=reads, at=st.sampled_from(STATIONS), framing=st.booleans())
    def fuzz(raw: bytes, at: StationRules, framing: bool) -> None:
        start = time.perf_counter()
        result = interpret(raw, at, error="incomplete frame" if framing else None)
        slowest[0] = max(slowest[0], time.perf_counter() - start)
        seen.ledger += 1
        if isinstance(result, WorkOrderScan | BadgeScan):  # printable text, within its cap
            assert not framing, "a read with a framing error was accepted"
            text = result.work_order if isinstance(result, WorkOrderScan) else result.operator
            assert text.isprintable(), text
            return
        assert result.type in VALID_TYPES
        if result.type == "scan.rejected":
            reason = str(result.data.get("reason") or "")
            assert reason, f"rejected without a reason: {raw!r}"
            if reason.startswith("unparseable:"):
                crashes.append(raw)
        else:
            seen.delivered += 1
            assert not framing, "a read with a framing error was accepted"
            assert isinstance(result.data.get("raw"), str)

    fuzz()
    seen.unexpected = len(crashes)
    report(f"fuzzing: {seen.ledger} reads, slowest {slowest[0] * 1000:.1f} ms", seen)
    assert not crashes, f"interpretation crashed (guard hit) on: {crashes[:5]!r}"


ATHERIS_TARGET = Path(__file__).with_name("fuzz_scans_atheris.py")


@pytest.mark.skipif(not LONG, reason="atheris runs in the long fault run only (make faults)")
@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
async def test_atheris_finds_no_crash_in_scan_interpretation(
    tmp_path: Path, report: Callable[[str, Counts], None]
) -> None:
    runs = 1_000_000
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ATHERIS_TARGET),
        f"-runs={runs}",
        "-seed=1",
        "-max_len=700",
        cwd=tmp_path,  # where libFuzzer writes a crash-* file, if any
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    text = out.decode(errors="replace")
    done = re.search(r"Done (\d+) runs in (\d+) second", text)
    seen = Counts(ledger=int(done.group(1)) if done else 0)
    seen.unexpected = 0 if process.returncode == 0 else 1
    took = f"{done.group(2)} s" if done else "?"
    report(f"atheris fuzzing: {seen.ledger} inputs in {took}", seen)
    assert process.returncode == 0, text[-4000:]
    assert seen.ledger == runs
