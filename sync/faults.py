"""Fault points for the fault-injection suite: a named spot where a test may kill the process.

`fault_point("outbox.before_commit")` does nothing unless the environment variable
`LINESIDE_FAULT` names that point, as `NAME` (the first time it is reached) or `NAME@N` (the
N-th time). Then the process sends itself SIGKILL there — no cleanup of any kind, as a crash or
a power cut at exactly that instant. The variable is read on the first call, not at import.

Points: `outbox.before_commit` (rows inserted, COMMIT not yet run), `station.before_ack`
(event committed, scanner not yet answered), `mqtt.before_puback` (the broker's PUBACK arrived,
the sink has not handled it), `publisher.before_cursor` (send acknowledged, cursor not moved).
This module lives in `sync/` so that `sync/` never imports `agent/`; `agent/` uses it too.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "LINESIDE_FAULT"

_hits: Counter[str] = Counter()
_target: list[tuple[str, int] | None] = []  # parsed on first use: [] = not yet read


def _parse(spec: str) -> tuple[str, int] | None:
    spec = spec.strip()
    if not spec:
        return None
    name, _, count = spec.partition("@")
    return name, int(count) if count else 1


def fault_point(name: str) -> None:
    """Kill this process right here if `LINESIDE_FAULT` targets `name` (see the module doc)."""
    if not _target:
        _target.append(_parse(os.environ.get(ENV, "")))
    target = _target[0]
    if target is None or target[0] != name:
        return
    _hits[name] += 1
    if _hits[name] >= target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
