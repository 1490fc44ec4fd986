"""Alarms a technician must see: raised and cleared by the agent, acknowledged on the page.

An alarm is identified by a stable key (`device:dock-in-1`, `backlog`, `disk`, `clock`), so
raising it again while active changes nothing and clearing it ends it. Acknowledging keeps an
active alarm visible but marks that somebody has seen it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime

from agent.web.view import Alarm

log = logging.getLogger(__name__)


class AlarmBoard:
    """The set of active alarms, keyed by id."""

    def __init__(self) -> None:
        self._active: dict[str, Alarm] = {}
        self.version = 0

    def raise_(self, alarm_id: str, kind: str, message: str) -> None:
        """Make `alarm_id` active (or update its message if it already is)."""
        current = self._active.get(alarm_id)
        if current is not None and current.message == message:
            return
        if current is None:
            log.warning("alarm %s: %s", alarm_id, message)
            self._active[alarm_id] = Alarm(alarm_id, kind, message, datetime.now(UTC))
        else:
            self._active[alarm_id] = replace(current, message=message)
        self.version += 1

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
