"""One label printer's task: completed batches become labels, each job committed, then sent.

`LabelPrinter.run` (supervised, one task per printer) follows the outbox: every
`batch.completed` of its line after its cursor becomes a batch label job, committed together
with the cursor, so a crash never forgets a label nor makes two. Other labels (a pallet's SSCC)
come from `enqueue`, which commits the job in the caller's own transaction. Each job is then:

1. offered only when the printer answers `~HS` ready, and marked `sending` (committed) first;
2. sent and confirmed by the host status (`drivers.printers.zpl.ZplPrinter.print_and_confirm`):
   `label.printed` closes it; a printer that could not take it leaves it queued (`label.failed`
   once per reason, tried again with backoff); a fault or silence after sending makes it
   undecided (`label.failed`).

A job found `sending` at start was interrupted between send and confirmation: it becomes
undecided too (`label.failed`, reason `interrupted`) and is never printed again by itself; the
status page offers Reprint (queued again, its events say `reprint`) or Void. A printer that
cannot print raises the `printer.fault` alarm; undecided jobs raise `label.undecided`. Batches
never wait for a printer. Fault point: `label.before_send` (job committed as sending, not sent).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any, Protocol

from agent.events import format_time
from agent.labels import LabelError, batch_label, sscc_label
from agent.printing.jobs import JobBook, LabelKindName, PrintJob, batch_context, with_state
from drivers.backoff import Backoff
from drivers.printers.zpl import ZplPrinter
from sync.faults import fault_point

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from agent.alarms import AlarmBoard
    from agent.config.printers import PrinterConfig
    from agent.events import EventFactory
    from agent.printing.checks import PrinterTemplates
    from drivers.base import DeviceHealth
    from sync.base import Draft, Envelope

log = logging.getLogger(__name__)

BATCHES = frozenset({"batch.completed"})
READ_LIMIT = 100


class PrintStore(Protocol):
    """What printing needs from the outbox."""

    @property
    def last_seq(self) -> int:
        """The last committed seq."""
        ...

    def state(self, key: str) -> str | None:
        """Committed application state."""
        ...

    async def append_many(self, drafts: Sequence[Draft]) -> list[Envelope]:
        """Commit events in one transaction."""
        ...

    async def put_state(self, values: Mapping[str, str]) -> None:
        """Commit state without an event."""
        ...

    async def read(
        self, after: int, *, routes: frozenset[str] | None, limit: int
    ) -> tuple[list[Envelope], int]:
        """Committed envelopes after a seq."""
        ...

    async def wait_beyond(self, seq: int) -> None:
        """Return once an event after `seq` is committed."""
        ...


class LabelPrinter:
    """One configured printer's jobs and task; see the module docstring."""

    def __init__(
        self,
        config: PrinterConfig,
        *,
        templates: PrinterTemplates,
        store: PrintStore,
        factory: EventFactory,
        alarms: AlarmBoard,
        line: str | None,
        idle_check_s: float = 30.0,
        retry_cap_s: float = 30.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.id = config.id
        self.config = config
        self.templates = templates
        self.driver = ZplPrinter(config.id, config)
        self.book = JobBook(config.id, store)
        self.line = line
        self._store = store
        self._factory = factory
        self._alarms = alarms
        self._idle_check_s = idle_check_s
        self._retry = Backoff(base_s=0.5, cap_s=retry_cap_s)
        self._jobs: dict[int, PrintJob] = {}
        self._lock = asyncio.Lock()  # one change of the jobs at a time
        self._wake = asyncio.Event()
        self.ready: bool | None = None
        self.reason: str | None = None
        self.printed = 0
        self._on_change = on_change or (lambda: None)

    @property
    def health(self) -> DeviceHealth:
        """The printer link's health."""
        return self.driver.health

    def undecided(self) -> list[PrintJob]:
        """The jobs waiting for a person's decision (Reprint or Void), oldest first."""
        return sorted(
            (j for j in self._jobs.values() if j.status == "undecided"), key=lambda j: j.job
        )

    @property
    def queued(self) -> int:
        """How many jobs wait to be printed."""
        return sum(1 for j in self._jobs.values() if j.status != "undecided")

    # --- the jobs ---------------------------------------------------------------------------

    async def restore(self) -> None:
        """Load the committed jobs; a job found `sending` was interrupted: undecided."""
        async with self._lock:
            self._jobs = self.book.jobs()
            interrupted = [j for j in self._jobs.values() if j.status == "sending"]
            cursor = self.book.cursor()
            drafts = []
            for job in interrupted:
                self._jobs[job.job] = job.with_status("undecided", "interrupted")
                detail = "the agent stopped between sending the job and its confirmation"
                drafts.append(self._failed_draft(self._jobs[job.job], detail))
            state = self.book.state(
                self._jobs.values(), cursor=self._store.last_seq if cursor is None else None
            )
            if drafts:
                drafts[0] = with_state(drafts[0], state)
                await self._store.append_many(drafts)
                log.warning(
                    "printer %s: %d job(s) interrupted before confirmation; "
                    "reprint or void them on the status page",
                    self.id,
                    len(drafts),
                )
            elif cursor is None:
                await self._store.put_state(state)
            self._undecided_alarm()

    async def enqueue(
        self,
        kind: LabelKindName,
        code: str,
        commit: Callable[[Mapping[str, str]], Awaitable[Any]],
        context: Mapping[str, str] | None = None,
    ) -> int:
        """Add a job for `code`; `commit` commits the given state with the caller's own event.

        Raises `LabelError` when the label cannot be made (nothing is committed then).
        """
        zpl = self._zpl(kind, code, context)
        async with self._lock:
            number = self.book.next_number()
            job = PrintJob(number, kind, code, zpl, created=format_time(self._factory.clock()))
            jobs = [*self._jobs.values(), job]
            await commit(self.book.state(jobs, next_number=number + 1))
            self._jobs[number] = job
        self._wake.set()
        return number

    async def decide(self, job_number: int, action: str) -> None:
        """A person's decision on an undecided job: `reprint` or `void`; `ValueError` if none."""
        async with self._lock:
            job = self._jobs.get(job_number)
            if job is None or job.status != "undecided":
                raise ValueError(f"printer {self.id} has no undecided job {job_number}")
            jobs = dict(self._jobs)
            if action == "reprint":
                jobs[job_number] = PrintJob(
                    job.job, job.kind, job.code, job.zpl, reprint=True, created=job.created
                )
            elif action == "void":
                del jobs[job_number]
            else:
                raise ValueError(f"unknown decision {action!r} (reprint or void)")
            await self._store.put_state(self.book.state(jobs.values()))
            self._jobs = jobs
            self._undecided_alarm()
        self._on_change()
        log.info("printer %s: job %d: %s", self.id, job_number, action)
        self._wake.set()

    def _zpl(self, kind: LabelKindName, code: str, context: Mapping[str, str] | None) -> str:
        if kind == "batch":
            return batch_label(code, template=self.templates.batch, context=context).decode()
        return sscc_label(code, template=self.templates.sscc, context=context).decode()

    async def _collect(self) -> None:
        """Turn the completed batches after the cursor into committed jobs."""
        cursor = self.book.cursor() or 0
        if not self.config.print_on or cursor >= self._store.last_seq:
            return
        envelopes, scanned = await self._store.read(cursor, routes=BATCHES, limit=READ_LIMIT)
        async with self._lock:
            number = self.book.next_number()
            new: list[PrintJob] = []
            drafts: list[Draft] = []
            for envelope in envelopes:
                event = json.loads(envelope.payload)
                if self.line is not None and event.get("source") != f"plc:{self.line}":
                    continue
                data = event.get("data") or {}
                code = str(data.get("trace_code"))
                try:
                    zpl = self._zpl("batch", code, batch_context(event))
                except LabelError as exc:
                    bad = PrintJob(number, "batch", code, "", status="undecided")
                    drafts.append(self._failed_draft(bad, str(exc), reason="bad label"))
                else:
                    created = format_time(self._factory.clock())
                    new.append(PrintJob(number, "batch", code, zpl, created=created))
                number += 1
            jobs = [*self._jobs.values(), *new]
            state = self.book.state(jobs, next_number=number, cursor=scanned)
            if drafts:
                drafts[0] = with_state(drafts[0], state)
                await self._store.append_many(drafts)
            else:
                await self._store.put_state(state)
            self._jobs.update({j.job: j for j in new})

    # --- the task ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Print for ever: collect, send, confirm (restarted by the supervisor on any error).

        Each start restores the committed jobs: a job left `sending` by a failed run is undecided.
        """
        await self.restore()
        try:
            # the link opened (or its fault shown) now, not at the first job or idle check:
            # the monitor lists the printer among the devices from the start
            state = await self.driver.state()
            self._note(ready=state.ready, reason=state.reason)
            while True:
                await self._collect()
                queued = sorted(j.job for j in self._jobs.values() if j.status == "queued")
                if not queued:
                    await self._idle()
                elif not await self._print(self._jobs[queued[0]]):
                    await self._wait(self._retry.next_delay())
        finally:
            await self.driver.close()

    async def _idle(self) -> None:
        """Wait for work; ask the printer now and then, so the page shows a fault early."""
        if not await self._wait(self._idle_check_s, watch_outbox=bool(self.config.print_on)):
            state = await self.driver.state()
            self._note(ready=state.ready, reason=state.reason)

    async def _wait(self, seconds: float, *, watch_outbox: bool = False) -> bool:
        """Sleep up to `seconds`; True when woken early (new work)."""
        self._wake.clear()
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
        if watch_outbox:
            waits.append(asyncio.ensure_future(self._store.wait_beyond(self.book.cursor() or 0)))
        try:
            done, _ = await asyncio.wait(waits, timeout=seconds, return_when="FIRST_COMPLETED")
        finally:  # never swallows a cancellation of this task (asyncio.wait does not raise)
            for waiter in waits:
                waiter.cancel()
            await asyncio.wait(waits)
        return bool(done)

    async def _print(self, job: PrintJob) -> bool:
        """Send one job and settle it; False when the printer could not take it."""
        state = await self.driver.state()
        if not state.ready:
            await self._not_taken(job, state.reason or "not ready", state.detail or "")
            return False
        sending = job.with_status("sending", job.reason)
        await self._commit_job(sending)
        fault_point("label.before_send")
        outcome = await self.driver.print_and_confirm(sending.zpl.encode())
        if outcome.printed:
            await self._settle(sending, self._printed_draft(sending))
            self.printed += 1
            self._retry.reset()
            self._note(ready=True, reason=None)
            log.info("printer %s: job %d printed (%s)", self.id, job.job, job.kind)
            return True
        reason, detail = outcome.reason or "failed", outcome.detail or ""
        if not outcome.sent:
            await self._not_taken(sending.with_status("queued", job.reason), reason, detail)
            return False
        undecided = sending.with_status("undecided", reason)
        await self._settle(undecided, self._failed_draft(undecided, detail))
        self._note(ready=False, reason=reason)
        self._undecided_alarm()
        log.warning("printer %s: job %d sent but not confirmed: %s", self.id, job.job, reason)
        return True  # settled: the next job may go when the printer is ready

    async def _not_taken(self, job: PrintJob, reason: str, detail: str) -> None:
        """The printer could not take the job: it stays queued; `label.failed` once per reason."""
        self._note(ready=False, reason=reason)
        if job.reason == reason:
            if job.status != self._jobs[job.job].status:
                await self._commit_job(job)
            return
        failed = job.with_status("queued", reason)
        await self._settle(failed, self._failed_draft(failed, detail))

    async def _commit_job(self, job: PrintJob) -> None:
        async with self._lock:
            jobs = {**self._jobs, job.job: job}
            await self._store.put_state(self.book.state(jobs.values()))
            self._jobs = jobs

    async def _settle(self, job: PrintJob, draft: Draft) -> None:
        """Commit what became of `job` with its event (a printed job leaves the open ones)."""
        async with self._lock:
            jobs = {**self._jobs, job.job: job}
            if job.status == "sending":  # printed
                del jobs[job.job]
            await self._store.append_many([with_state(draft, self.book.state(jobs.values()))])
            self._jobs = jobs
        self._on_change()

    def _note(self, *, ready: bool, reason: str | None) -> None:
        """Remember the printer's state; raise or clear its fault alarm."""
        if (self.ready, self.reason) != (ready, reason):
            self._on_change()
        self.ready, self.reason = ready, reason
        key = f"printer:{self.id}"
        if ready:
            self._alarms.clear(key)
        else:
            self._alarms.raise_(
                key,
                "printer",
                f"printer {self.id} cannot print: {reason}",
                code="printer.fault",
                params={"printer": self.id, "reason": reason},
            )

    def _undecided_alarm(self) -> None:
        count = sum(1 for j in self._jobs.values() if j.status == "undecided")
        key = f"label-undecided:{self.id}"
        if not count:
            self._alarms.clear(key)
            return
        self._alarms.raise_(
            key,
            "printer",
            f"printer {self.id}: {count} label(s) not confirmed: reprint or void on this page",
            code="label.undecided",
            params={"printer": self.id, "jobs": count},
        )

    def _printed_draft(self, job: PrintJob) -> Draft:
        return self._factory.draft(
            "label.printed",
            f"printer:{self.id}",
            job.event_data(self.id),
            keys=[("label_job", f"{self.id}:{job.job}")],
        )

    def _failed_draft(self, job: PrintJob, detail: str, *, reason: str | None = None) -> Draft:
        data = {**job.event_data(self.id), "reason": reason or job.reason, "detail": detail}
        return self._factory.draft(
            "label.failed",
            f"printer:{self.id}",
            data,
            keys=[("label_job", f"{self.id}:{job.job}")],
        )
