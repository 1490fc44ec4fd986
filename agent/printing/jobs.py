"""One printer's print jobs, kept in the outbox's committed state.

A job is committed before it is sent and changes state only in commits, usually together with
the event that says what became of it (`JobBook.state` gives the keys to commit with it):

    queued ──▶ sending ──▶ (printed: the job is closed, `label.printed`)
      ▲  │         └─────▶ undecided: sent but not confirmed (a fault or silence after the job
      │  │                 went out, or the agent stopped in between): only a person decides,
      │  │                 Reprint (queued again, marked `reprint`) or Void (closed)
      └──┘ not sent: the printer could not take it (it stays queued and is tried again)

Keys (per printer id): `print:{id}:open` the open jobs (JSON), `print:{id}:next` the next job
number, `print:{id}:cursor` the last outbox seq looked at for completed batches. Closed jobs
leave the state: their events are their history, so the state stays small. `with_state` adds
the jobs to an event's draft; `batch_context` is a batch label's text from its event.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from sync.base import Draft

JobStatus = Literal["queued", "sending", "undecided"]
LabelKindName = Literal["batch", "sscc"]


class StateReader(Protocol):
    """Committed application state (the outbox)."""

    def state(self, key: str) -> str | None:
        """The committed value of a key."""
        ...


@dataclass(frozen=True, slots=True)
class PrintJob:
    """One label to print: what it is, its ZPL, and where it stands."""

    job: int
    kind: LabelKindName
    code: str  # the trace code (batch) or the SSCC
    zpl: str
    status: JobStatus = "queued"
    reprint: bool = False
    reason: str | None = None  # why it failed last
    created: str = ""

    def with_status(self, status: JobStatus, reason: str | None = None) -> PrintJob:
        """The job in another state."""
        return replace(self, status=status, reason=reason)

    def event_data(self, printer: str) -> dict[str, Any]:
        """The fields `label.printed` and `label.failed` share."""
        code_key = "trace_code" if self.kind == "batch" else "sscc"
        return {
            "printer": printer,
            "job": self.job,
            "kind": self.kind,
            code_key: self.code,
            "reprint": self.reprint,
        }


class JobBook:
    """The committed jobs of one printer: read from the state, written as state to commit."""

    def __init__(self, printer: str, store: StateReader) -> None:
        self.printer = printer
        self._store = store
        self.open_key = f"print:{printer}:open"
        self.next_key = f"print:{printer}:next"
        self.cursor_key = f"print:{printer}:cursor"

    def jobs(self) -> dict[int, PrintJob]:
        """The open jobs as committed, by number."""
        raw = self._store.state(self.open_key)
        if not raw:
            return {}
        return {int(j["job"]): PrintJob(**j) for j in json.loads(raw)}

    def next_number(self) -> int:
        """The number the next new job gets."""
        return int(self._store.state(self.next_key) or "1")

    def cursor(self) -> int | None:
        """The last outbox seq looked at for completed batches (None: never looked)."""
        raw = self._store.state(self.cursor_key)
        return None if raw is None else int(raw)

    def state(
        self, jobs: Iterable[PrintJob], *, next_number: int | None = None, cursor: int | None = None
    ) -> dict[str, str]:
        """The state keys that record `jobs` as the open ones (and the counters, if given)."""
        ordered = sorted(jobs, key=lambda j: j.job)
        values = {self.open_key: json.dumps([asdict(j) for j in ordered], separators=(",", ":"))}
        if next_number is not None:
            values[self.next_key] = str(next_number)
        if cursor is not None:
            values[self.cursor_key] = str(cursor)
        return values


def with_state(draft: Draft, state: Mapping[str, str]) -> Draft:
    """`draft` committing `state` too (the jobs, with the event that changes them)."""
    return replace(draft, state={**draft.state, **state})


def batch_context(event: Mapping[str, Any]) -> dict[str, str]:
    """The text fields of a batch label, from its `batch.completed` envelope."""
    data = event.get("data") or {}
    quantity = data.get("quantity")
    return {
        "site": str(event.get("site") or ""),
        "node": str(event.get("node") or ""),
        "line": str(event.get("source") or "").removeprefix("plc:"),
        "product": str(data.get("gtin") or ""),
        "work_order": str(data.get("work_order") or ""),
        "quantity": "" if quantity is None else str(quantity),
    }
