"""The reconnect policy of every destination link: the sinks' publishers and the MQTT commands.

After the n-th failure in a row a link waits a random time between 0 and
`min(cap, RECONNECT_BASE_S * 1.5**n)` ("full jitter", aiomqtt's growth factor: the agents that
lost the same broker at the same moment do not come back at the same moment); a success resets
the count. A destination's own `Retry-After` is honoured instead, up to `RETRY_AFTER_CAP_S`.
(`drivers.backoff` is the drivers' copy of the same rule: drivers and sync share no code.)
"""

from __future__ import annotations

import random

RECONNECT_BASE_S = 0.5
RECONNECT_CAP_S = 30.0
RETRY_AFTER_CAP_S = 600.0
GROWTH = 1.5
_MAX_EXPONENT = 40  # 1.5**40 is far past any cap; keeps the power finite


def reconnect_delay(failures: int, *, cap_s: float = RECONNECT_CAP_S) -> float:
    """A random delay before reconnecting after `failures` failures in a row (0 = the first)."""
    ceiling = min(cap_s, RECONNECT_BASE_S * GROWTH ** min(failures, _MAX_EXPONENT))
    return random.uniform(0, ceiling)  # noqa: S311 - jitter, not crypto


def retry_after_delay(seconds: float) -> float:
    """How long to wait when the destination said `Retry-After: seconds`."""
    return min(seconds, RETRY_AFTER_CAP_S)
