"""Clock steps: the wall clock jumps ±1 h while events are made (the EventFactory's clock).

Ordering is by `seq`, never by time: seqs stay gapless in commit order and ids unique whatever
the clock does; events made while the clock is not synchronised carry `"clock_synced":false`.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from agent.events import EventFactory
from faults.conftest import size
from faults.oracle import Counts, Ledger, check, scan_delivery
from sync.outbox import Outbox

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


async def test_clock_steps_leave_order_and_ids_alone(
    tmp_path: Path, report: Callable[[str, Counts], None]
) -> None:
    rng = random.Random(11)
    now = [datetime(2026, 11, 24, 12, tzinfo=UTC)]
    synced: list[bool | None] = [True]
    factory = EventFactory("plant-a", "line-3", lambda: now[0], lambda: synced[0])
    ledger = Ledger()
    envelopes = []
    stepped = 0
    async with Outbox(tmp_path / "outbox.db", destinations=["d"]) as outbox:
        for i in range(size(2000, 200_000)):
            if rng.random() < 0.05:
                now[0] += timedelta(hours=rng.choice((-1, 1)))
                synced[0] = rng.random() < 0.5
                stepped += 1
            now[0] += timedelta(milliseconds=1)
            key = f"C{i:07d}"
            ledger.sent(key, {"type": "goods.received", "source": "scanner:s", "raw": key})
            ledger.acknowledge(key)
            flagged = synced[0] is False
            env = await outbox.append(factory.draft("goods.received", "scanner:s", {"raw": key}))
            envelopes.append((env, flagged))
    decoded = [json.loads(e.payload) for e, _ in envelopes]
    assert [d["seq"] for d in decoded] == list(range(1, len(decoded) + 1))
    assert [d["data"]["raw"] for d in decoded] == sorted(ledger.expected)
    assert len({d["id"] for d in decoded}) == len(decoded)
    for d, (_, flagged) in zip(decoded, envelopes, strict=True):
        assert ("clock_synced" in d) is flagged
        if flagged:
            assert d["clock_synced"] is False
    times = [d["time"] for d in decoded]
    assert times != sorted(times), "the clock did step backwards"
    counts = check(ledger, [scan_delivery(e.payload) for e, _ in envelopes])
    report(f"clock steps: {stepped} steps of ±1 h", counts)
    assert counts.ok, counts.problems[:10]


def test_synchronised_or_unknown_clock_adds_nothing() -> None:
    for state in (True, None):

        def synced(state: bool | None = state) -> bool | None:
            return state

        draft = EventFactory("s", "n", clock_synced=synced).draft("t", "x", {})
        assert "clock_synced" not in json.loads(draft.payload(1))
