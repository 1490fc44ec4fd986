"""Whether the system clock is synchronised (NTP), as the kernel reports it.

`adjtimex(2)` with no modes returns the clock state; TIME_ERROR (5) means the kernel considers
the clock unsynchronised. Trace-code dates and event times depend on the clock, so an
unsynchronised clock is an alarm (events are still ordered by `seq`, never by time).

libc is resolved once, on the first call (the agent makes it at start): the monitor asks every
second, and `ctypes.util.find_library` runs a subprocess and writes temporary files, which fail
when the process is out of file descriptors. The check itself is one system call, no descriptor.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from typing import Any

_TIME_ERROR = 5


class _Timex(ctypes.Structure):
    # struct timex of <sys/timex.h> on Linux: modes, then 20 longs/ints; padded generously.
    _fields_ = [("modes", ctypes.c_uint), ("_rest", ctypes.c_byte * 256)]


@functools.cache
def _adjtimex() -> Any | None:
    """The `adjtimex` of libc, looked up once; None where there is none (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:  # the symbols already loaded into this process (libc among them): no lookup needed
        return ctypes.CDLL(None, use_errno=True).adjtimex
    except (OSError, AttributeError):
        pass
    try:
        name = ctypes.util.find_library("c")
        return ctypes.CDLL(name, use_errno=True).adjtimex if name else None
    except (OSError, AttributeError):
        return None


def clock_synchronised() -> bool | None:
    """True/False from the kernel, or None where it cannot be asked (not Linux)."""
    adjtimex = _adjtimex()
    if adjtimex is None:
        return None
    state = adjtimex(ctypes.byref(_Timex()))
    if not isinstance(state, int) or state < 0:
        return None
    return bool(state != _TIME_ERROR)
