"""What one `lineside doctor` check found: `Status` (ok, warn, fail) and `Finding`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

CHECK_TIMEOUT_S = 10.0
"""The longest any one check waits for a device or a peer."""


class Status(IntEnum):
    """How a check came out, ordered by how bad it is."""

    OK = 0
    WARN = 1
    FAIL = 2


@dataclass(frozen=True, slots=True)
class Finding:
    """The outcome of one check: what, how it went, details, and what to do about it."""

    check: str
    status: Status
    detail: str
    hint: str = ""
