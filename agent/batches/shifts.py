"""The shift calendar: which named shift (crew) is on at a given moment, from `[[shifts]]`.

Each shift's hours and days are its config entry's (`agent.config.shifts`). When shifts
overlap, the first one listed wins, so a calendar reads top to bottom like a rota.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from agent.config.shifts import ShiftConfig


class ShiftCalendar:
    """Answers "which shift is on" for moments in the plant's time zone."""

    def __init__(self, shifts: Sequence[ShiftConfig], *, timezone: str | None) -> None:
        self.shifts = tuple(shifts)
        self._zone = ZoneInfo(timezone) if timezone else None

    def at(self, moment: datetime) -> str | None:
        """The name of the shift on at `moment` (an aware datetime), None if none is."""
        local = moment.astimezone(self._zone) if self._zone else moment.astimezone()
        for shift in self.shifts:
            if shift.covers(local):
                return shift.name
        return None
