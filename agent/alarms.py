"""Alarms a technician must see: raised and cleared by the agent, acknowledged on the page.

An alarm is identified by a stable key (`device:dock-in-1`, `backlog`, `disk`, `clock`), so
raising it again while active changes nothing and clearing it ends it. Acknowledging keeps an
active alarm visible but marks that somebody has seen it.

Each alarm has an English `message` and, for a page in another language, a stable `code` with
its `params` (the page's dictionary words it; `agent/web/static/i18n.js`). The codes:

| code | params |
| --- | --- |
| `device.disconnected` | `device`, `error` |
| `disk.low` | `free_mb` |
| `clock.not_synced` | — |
| `backlog.refused` | `detail` |
| `batch.no_product` | `plc` |
| `batch.trace_code` | `plc`, `detail` |
| `batch.refused` | `plc`, `detail` |
| `batch.counter_jump` | `plc`, `last`, `value` |
| `outbox.fault` | `detail` (the database error) |
| `outbox.new_sequence` | `detail` (why a new sequence started) |
| `reconcile.discrepancy` | `lot`, `discrepancies`: `{code, params}` each (`history.reconcile`) |
| `printer.fault` | `printer`, `reason` (`paper out`, `head open`, `no answer`, …) |
| `label.undecided` | `printer`, `jobs` (labels sent but never confirmed: Reprint or Void) |

A message that quotes scanned or device-provided text (`quotes_input=True`) is logged only at
DEBUG; the WARNING line then names the alarm and its code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Alarm:
    """An active alarm (backlog limit, device down, disk low, clock not synchronised, ...).

    `message` is English; `code` and `params` say the same for a page to word in its own
    language (codes listed above; None for an alarm without a code).
    """

    id: str
    kind: str
    message: str
    since: datetime
    acknowledged: bool = False
    code: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


class AlarmBoard:
    """The set of active alarms, keyed by id."""

    def __init__(self) -> None:
        self._active: dict[str, Alarm] = {}
        self.version = 0

    def raise_(
        self,
        alarm_id: str,
        kind: str,
        message: str,
        *,
        code: str | None = None,
        params: dict[str, Any] | None = None,
        quotes_input: bool = False,
    ) -> None:
        """Make `alarm_id` active (or update its message if it already is)."""
        current = self._active.get(alarm_id)
        if current is not None and current.message == message:
            return
        params = params or {}
        if current is None:
            if quotes_input:
                log.warning(
                    "alarm %s (%s) raised; its text is logged at debug level", alarm_id, code
                )
                log.debug("alarm %s: %s", alarm_id, message)
            else:
                log.warning("alarm %s: %s", alarm_id, message)
            alarm = Alarm(alarm_id, kind, message, datetime.now(UTC), code=code, params=params)
            self._active[alarm_id] = alarm
        else:
            self._active[alarm_id] = replace(current, message=message, code=code, params=params)
        self.version += 1

    def backlog_refused(self, detail: object) -> None:
        """Raise the `backlog` alarm: a station's read was refused by the outbox (`detail`)."""
        self.raise_(
            "backlog",
            "backlog",
            f"new events refused: {detail}",
            code="backlog.refused",
            params={"detail": str(detail)},
        )

    def clear(self, alarm_id: str) -> None:
        """End `alarm_id` if it is active."""
        if self._active.pop(alarm_id, None) is not None:
            log.info("alarm %s cleared", alarm_id)
            self.version += 1

    def acknowledge(self, alarm_id: str) -> None:
        """Mark an active alarm as seen; `KeyError` if there is none."""
        alarm = self._active[alarm_id]
        self._active[alarm_id] = replace(alarm, acknowledged=True)
        self.version += 1

    def active(self) -> list[Alarm]:
        """The active alarms, oldest first."""
        return sorted(self._active.values(), key=lambda a: a.since)

    def is_active(self, alarm_id: str) -> bool:
        """Whether `alarm_id` is active."""
        return alarm_id in self._active
