"""The audit log: one JSON line per control action, login or command, bounded on disk.

Every entry is `time`, `action`, `args`, `client`, `result`. The file is rotated by size
(`audit.log` → `audit.log.1` → … → `audit.log.N`, the oldest dropped), so it never fills the
disk the outbox lives on. Refusals (a result of `"failed"` or starting with `"refused"`) are what
a stranger can cause at will, so they are rate-limited per action: the first few of an interval
are written one by one, the rest are counted and written as one summary line when the interval
ends (by client and reason), never one line per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

log = logging.getLogger(__name__)

REFUSALS_WRITTEN_PER_INTERVAL = 5  # per action; enough to see what went on, not a flood
REFUSAL_INTERVAL_S = 60.0
SUMMARY_TOP = 5  # clients and reasons named in a summary line


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def is_refusal(result: str) -> bool:
    """Whether an audit result is a refusal (rate-limited) rather than something that happened."""
    return result == "failed" or result.startswith("refused")


@dataclass(slots=True)
class _Refusals:
    """Refusals of one action in the current interval."""

    started: float  # monotonic
    written: int = 0
    first_suppressed: str | None = None
    last_suppressed: str | None = None
    clients: Counter[str] = field(default_factory=Counter)
    results: Counter[str] = field(default_factory=Counter)

    @property
    def suppressed(self) -> int:
        return sum(self.results.values())


class AuditLog:
    """Appends audit entries to `path`, rotated by size, refusals rate-limited (see module doc)."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 10 * 2**20,
        keep: int = 5,
        refusals_per_interval: int = REFUSALS_WRITTEN_PER_INTERVAL,
        interval_s: float = REFUSAL_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_bytes < 1 or keep < 1:
            raise ValueError("an audit log needs max_bytes >= 1 and keep >= 1")
        self._path = path
        self._max_bytes = max_bytes
        self._keep = keep
        self._per_interval = refusals_per_interval
        self._interval_s = interval_s
        self._clock = clock
        self._refusals: dict[str, _Refusals] = {}
        self._timer: asyncio.TimerHandle | None = None

    @property
    def path(self) -> Path:
        """The current file (rotated files are `path` with `.1` … `.N` appended)."""
        return self._path

    def record(self, action: str, args: dict[str, Any], client: str, result: str) -> None:
        """Append one entry (a refusal may be counted into a summary instead, see module doc).

        A failure to write is logged, never raised: an audit problem must not stop the action
        path, and the operator sees it in the log.
        """
        self._summarise_due()
        if is_refusal(result) and not self._admit_refusal(action, client, result):
            return
        self._write(
            {"time": _now_iso(), "action": action, "args": args, "client": client, "result": result}
        )

    def flush(self) -> None:
        """Write every pending summary now (at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for action in list(self._refusals):
            self._summarise(action)

    # --- refusals ----------------------------------------------------------------------------

    def _admit_refusal(self, action: str, client: str, result: str) -> bool:
        """Whether this refusal is written as it is; otherwise it is counted for the summary."""
        state = self._refusals.get(action)
        if state is None:
            state = self._refusals[action] = _Refusals(started=self._clock())
            self._arm_timer()
        if state.written < self._per_interval:
            state.written += 1
            return True
        now = _now_iso()
        state.first_suppressed = state.first_suppressed or now
        state.last_suppressed = now
        state.clients[client] += 1
        state.results[result] += 1
        return False

    def _summarise_due(self) -> None:
        now = self._clock()
        for action, state in list(self._refusals.items()):
            if now - state.started >= self._interval_s:
                self._summarise(action)

    def _summarise(self, action: str) -> None:
        state = self._refusals.pop(action)
        if not state.suppressed:
            return
        clients = state.clients.most_common(SUMMARY_TOP)
        self._write(
            {
                "time": _now_iso(),
                "action": action,
                "args": {
                    "suppressed": state.suppressed,
                    "from": state.first_suppressed,
                    "to": state.last_suppressed,
                    "clients": dict(clients),
                    "other_clients": len(state.clients) - len(clients),
                    "results": dict(state.results.most_common(SUMMARY_TOP)),
                },
                "client": clients[0][0] if len(state.clients) == 1 else "*",
                "result": f"refused: {state.suppressed} more refusal(s), summarised",
            }
        )

    def _arm_timer(self) -> None:
        """Write the summary when the interval ends, even if nothing else is recorded by then."""
        if self._timer is not None:
            return
        with contextlib.suppress(RuntimeError):  # no running loop (a CLI, a test): on next record
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._interval_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._summarise_due()
        if self._refusals:
            self._arm_timer()

    # --- the file ----------------------------------------------------------------------------

    def _rotated(self, n: int) -> Path:
        return self._path.with_name(f"{self._path.name}.{n}")

    def _write(self, entry: dict[str, Any]) -> None:
        line = (json.dumps(entry, ensure_ascii=False, default=str) + "\n").encode()
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            # A few hundred bytes, rarely (refusals are rate-limited): a plain append is cheaper
            # than a thread hop.
            with self._path.open("ab") as f:
                if f.tell() and f.tell() + len(line) > self._max_bytes:
                    f.close()
                    self._rotate()
                    with self._path.open("ab") as fresh:
                        fresh.write(line)
                else:
                    f.write(line)
        except OSError:
            log.exception("cannot write the audit log %s", self._path)

    def _rotate(self) -> None:
        """`audit.log.{N-1}` → `.N` (the oldest replaced), …, `audit.log` → `.1`."""
        for i in range(self._keep - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                self._rotated(i).replace(self._rotated(i + 1))
        self._path.replace(self._rotated(1))
        log.info("audit log rotated: %s", self._path)
