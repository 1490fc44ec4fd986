"""Full-jitter reconnect backoff, the one every driver and the agent's supervisor use.

After the n-th failure in a row a driver waits a random time between 0 and
`min(cap, base * 1.5**n)` (aiomqtt's growth factor; "full jitter" spreads the retries of many
agents that lost the same PLC or broker at the same moment). A success resets the count.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

GROWTH = 1.5
_MAX_EXPONENT = 40  # 1.5**40 is far past any cap; keeps the power finite


def full_jitter(attempt: int, *, base_s: float, cap_s: float) -> float:
    """A random delay for the `attempt`-th retry in a row (0 = the first)."""
    ceiling = min(cap_s, base_s * GROWTH ** min(attempt, _MAX_EXPONENT))
    return random.uniform(0, ceiling)  # noqa: S311 (jitter, not security)


@dataclass(slots=True)
class Backoff:
    """Counts failures in a row and hands out the next full-jitter delay."""

    base_s: float
    cap_s: float
    attempt: int = 0

    def next_delay(self) -> float:
        """The delay before the next retry; counts this failure."""
        delay = full_jitter(self.attempt, base_s=self.base_s, cap_s=self.cap_s)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Start afresh after a success."""
        self.attempt = 0
