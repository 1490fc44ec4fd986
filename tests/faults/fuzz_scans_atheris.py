"""An atheris (libFuzzer) target for scan interpretation, run by `make faults` as a subprocess.

Run it alone with `python tests/faults/fuzz_scans_atheris.py -runs=100000`. Each input chooses
a station role and whether the driver flagged a framing error, the rest is the raw read. A crash
is any exception out of `interpret`, a type that is not a scan event, a rejection without a
reason, or a rejection by `interpret`'s last-resort guard ("unparseable: ..."), which means a
bug met on odd input. Not collected by pytest (no `test_` prefix): `test_fuzz_scans.py` runs it.
"""

from __future__ import annotations

import sys

import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]

with atheris.instrument_imports():
    from agent.config.scanners import StationRole
    from agent.scanning.interpret import BadgeScan, StationRules, WorkOrderScan, interpret

STATIONS = [  # every role, and a line with its work-order and badge prefixes
    *(StationRules(role) for role in StationRole),
    StationRules(StationRole.LINE, line="filler", work_order_prefix="WO:", operator_prefix="OP:"),
]
VALID_TYPES = {"goods.received", "goods.shipped", "material.consumed", "scan.rejected"}


def one_input(data: bytes) -> None:
    """Interpret one fuzzed read; raise on anything the promise does not allow."""
    fdp = atheris.FuzzedDataProvider(data)
    at = STATIONS[fdp.ConsumeIntInRange(0, len(STATIONS) - 1)]
    framing = fdp.ConsumeBool()
    raw = fdp.ConsumeBytes(fdp.remaining_bytes())
    result = interpret(raw, at, error="incomplete frame" if framing else None)
    if isinstance(result, WorkOrderScan | BadgeScan):
        if framing:
            raise AssertionError(f"a read with a framing error was accepted: {raw!r}")
        return
    if result.type not in VALID_TYPES:
        raise AssertionError(f"unknown event type {result.type!r} for {raw!r}")
    if result.type == "scan.rejected":
        reason = str(result.data.get("reason") or "")
        if not reason or reason.startswith("unparseable:"):
            raise AssertionError(f"rejected by the guard or without a reason: {raw!r}: {reason}")
    elif framing:
        raise AssertionError(f"a read with a framing error was accepted: {raw!r}")


def main() -> None:
    """Hand the target to libFuzzer with this process's arguments (-runs=N, -seed=S, ...)."""
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
