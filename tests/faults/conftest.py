"""Marks every test here `faults`, sizes scenarios by LINESIDE_FAULTS, prints the counts tables.

`LINESIDE_FAULTS=long` (what `make faults` sets) runs the long version of each scenario; the
default is the short one that `make test` runs. Each scenario hands its oracle verdict to the
`report` fixture; the tables are printed at the end of the run (and at once with `-s`). They
travel on each test's report (`user_properties`), so a run split over pytest-xdist workers
prints them too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from faults.oracle import Counts, table

if TYPE_CHECKING:
    from collections.abc import Callable

LONG = os.environ.get("LINESIDE_FAULTS", "").strip().lower() == "long"

LONG_TIMEOUT_S = 4 * 3600

TABLE = "fault_table"


def size(short: int, long: int) -> int:
    """The scenario size for this run."""
    return long if LONG else short


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.faults)
            if LONG:  # long scenarios run for many minutes; the suite's 120 s is for short ones
                item.add_marker(pytest.mark.timeout(LONG_TIMEOUT_S))


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[str, Counts], None]:
    """Record (and print) one scenario's counts table."""

    def record(title: str, counts: Counts) -> None:
        name = f"{title} [{'long' if LONG else 'short'}] ({request.node.name})"
        text = table(name, counts)
        request.node.user_properties.append((TABLE, text))
        print(text)  # noqa: T201 - make faults runs with -s to show it as it happens

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    tables = [
        value
        for outcome in ("passed", "failed")
        for test in terminalreporter.stats.get(outcome, [])
        if getattr(test, "when", None) == "call"
        for key, value in getattr(test, "user_properties", [])
        if key == TABLE
    ]
    if tables:
        terminalreporter.section("fault-injection counts")
        for text in tables:
            terminalreporter.write(str(text))
