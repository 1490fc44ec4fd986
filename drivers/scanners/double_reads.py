"""Double-read suppression: the same barcode read again within a short window is one read.

A scanner held over a label, or a trigger pressed twice, sends the same payload again within
milliseconds; counting it twice would book goods twice. `DoubleReadFilter` remembers the last
payload and when it came: a payload equal to the previous one within `window_s` is a double.
The window slides with each repeat, so a scanner left reading the same label keeps being
suppressed; any other payload in between makes the same one count again. Pure, no I/O.
"""

from __future__ import annotations

import time


class DoubleReadFilter:
    """Spots double reads; see the module docstring."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._last: bytes | None = None
        self._last_at = 0.0

    def is_double(self, data: bytes, now: float | None = None) -> bool:
        """Record a read of `data` (at monotonic `now`); whether it repeats the previous one."""
        at = time.monotonic() if now is None else now
        double = data == self._last and at - self._last_at < self.window_s
        self._last, self._last_at = data, at
        return double
