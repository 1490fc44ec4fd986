"""The shift calendar and its config: day shifts, overnight shifts, days, first match wins."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agent.batches.shifts import ShiftCalendar
from agent.config import ConfigError, parse_config
from agent.config.shifts import ShiftConfig


def calendar(timezone: str | None = "UTC") -> ShiftCalendar:
    shifts = [
        ShiftConfig.model_validate(
            {"name": "weekend", "start": "00:00", "end": "00:00", "days": ["sat", "sun"]}
        ),
        ShiftConfig.model_validate({"name": "early", "start": "06:00", "end": "14:00"}),
        ShiftConfig.model_validate({"name": "late", "start": "14:00", "end": "22:00"}),
        ShiftConfig.model_validate(
            {
                "name": "night",
                "start": "22:00",
                "end": "06:00",
                "days": ["mon", "tue", "wed", "thu", "fri"],
            }
        ),
    ]
    return ShiftCalendar(shifts, timezone=timezone)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 11, 23, 6, 0, tzinfo=UTC), "early"),  # Monday, start is inclusive
        (datetime(2026, 11, 23, 13, 59, tzinfo=UTC), "early"),
        (datetime(2026, 11, 23, 14, 0, tzinfo=UTC), "late"),  # end is exclusive
        (datetime(2026, 11, 23, 23, 30, tzinfo=UTC), "night"),
        (datetime(2026, 11, 24, 3, 0, tzinfo=UTC), "night"),  # Tuesday morning: Monday's night
        (datetime(2026, 11, 23, 3, 0, tzinfo=UTC), None),  # Monday 03:00: no Sunday night shift
        (datetime(2026, 11, 28, 3, 0, tzinfo=UTC), "weekend"),  # listed first: beats Fri night
        (datetime(2026, 11, 28, 12, 0, tzinfo=UTC), "weekend"),
    ],
)
def test_which_shift_is_on(moment: datetime, expected: str | None) -> None:
    assert calendar().at(moment) == expected


def test_the_plant_time_zone_decides() -> None:
    # 23:00 UTC Monday is 07:00 Tuesday in Shanghai: the early shift there
    assert calendar("Asia/Shanghai").at(datetime(2026, 11, 23, 23, 0, tzinfo=UTC)) == "early"


def test_no_shift_on() -> None:
    only = ShiftConfig.model_validate(
        {"name": "day", "start": "08:00", "end": "17:00", "days": ["mon"]}
    )
    cal = ShiftCalendar([only], timezone="UTC")
    assert cal.at(datetime(2026, 11, 24, 9, 0, tzinfo=UTC)) is None  # a Tuesday
    assert ShiftCalendar([], timezone=None).at(datetime.now(UTC)) is None


def test_config_accepts_shifts_and_names_bad_keys() -> None:
    base = {
        "agent": {"site": "a", "node": "b"},
        "destinations": [{"name": "x", "kind": "mqtt", "url": "mqtt://127.0.0.1"}],
    }
    config = parse_config(
        {
            **base,
            "shifts": [{"name": "early", "start": "06:00", "end": "14:00"}],
            "line": {"operator_prefix": "BADGE-"},
        }
    )
    assert config.shifts[0].days == ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    assert config.line.operator_prefix == "BADGE-"
    with pytest.raises(ConfigError) as bad:
        parse_config(
            {
                **base,
                "shifts": [
                    {"name": "x", "start": "25:00", "end": "06:00", "days": ["monday"], "crew": 1}
                ],
            }
        )
    problems = "\n".join(bad.value.problems)
    assert 'shifts[0].start: expected "HH:MM"' in problems
    assert "shifts[0].days[0]" in problems
    assert "shifts[0].crew: unknown key" in problems
