"""Whether the system clock is synchronised (NTP), as the kernel reports it.

`adjtimex(2)` with no modes returns the clock state; TIME_ERROR (5) means the kernel considers
the clock unsynchronised. Trace-code dates and event times depend on the clock, so an
unsynchronised clock is an alarm (events are still ordered by `seq`, never by time).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_TIME_ERROR = 5


class _Timex(ctypes.Structure):
    # struct timex of <sys/timex.h> on Linux: modes, then 20 longs/ints; padded generously.
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 256)]


def clock_synchronised() -> bool | None:
    """True/False from the kernel, or None where it cannot be asked (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        state = libc.adjtimex(ctypes.byref(_Timex()))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return bool(state != _TIME_ERROR)
