"""`[[shifts]]`: the shift calendar's entries, which named shift (crew) is on when.

A shift runs from `start` to `end` in the plant's local time on the listed `days`; a shift
whose end is not after its start runs overnight and belongs to the day it starts on (a
Friday 22:00-06:00 night shift covers Saturday 03:00). `covers` answers for one shift;
`agent.batches.shifts.ShiftCalendar` picks the first listed that covers a moment.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ShiftConfig(BaseModel):
    """One shift of the calendar (`[[shifts]]`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, description="Shift or crew name, e.g. early.")
    start: time = Field(description='Local start time, "HH:MM".')
    end: time = Field(description='Local end time, "HH:MM"; not after start: runs overnight.')
    days: tuple[Weekday, ...] = Field(
        default=WEEKDAYS,
        min_length=1,
        description='Days the shift starts on ("mon".."sun"); default every day.',
    )

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hh_mm(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return datetime.strptime(value, "%H:%M").time()  # noqa: DTZ007 (a wall-clock time)
            except ValueError as exc:
                raise ValueError(f'expected "HH:MM", got {value!r}') from exc
        return value

    def covers(self, local: datetime) -> bool:
        """Whether this shift is on at the local (plant) time `local`."""
        clock = local.time().replace(tzinfo=None)
        today = WEEKDAYS[local.weekday()]
        yesterday = WEEKDAYS[(local - timedelta(days=1)).weekday()]
        if self.start < self.end:
            return today in self.days and self.start <= clock < self.end
        # overnight (or 24 h when start == end): the evening part today, the morning part
        # belongs to the shift that started yesterday
        return (today in self.days and clock >= self.start) or (
            yesterday in self.days and clock < self.end
        )
