"""Telling a broker that refuses a publish by cutting the connection from a flapping network.

Some brokers answer a publish they refuse not with a reason code but by closing the connection
(NATS's MQTT listener on a `.` inside a topic level; MQTT 3.1.1 has no way to say no).
The agent then reconnects and publishes the same event first again, for ever, and "connection
lost" says nothing of why. A `CutOffWatch` lives as long as its destination (across the sink's
connections) and is told how each connection ended. A connection that the broker closed within
`CUT_OFF_WITHIN_S` of the first event published on it, before any event's PUBACK, after a
successful connect and state publish, counts as a cut-off on that event; `CUT_OFF_REPEATS` of
them in a row on the same event make the cause: the topic is named, in the destination's last
error, the status page and the log. Anything else (a PUBACK arrived, another event was first, the
drop came later, a timeout) starts the count afresh: a flapping network drops links at random
moments and does not look like this. The event is not quarantined: the broker did not say no.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

CUT_OFF_REPEATS = 3
CUT_OFF_WITHIN_S = 5.0


class CutOffWatch:
    """Counts connections in a row that the broker closed right after the same first event."""

    def __init__(self, name: str, *, repeats: int = CUT_OFF_REPEATS) -> None:
        self._name = name
        self._repeats = repeats
        self._event_id: str | None = None
        self._count = 0
        self._reported: str | None = None

    @property
    def count(self) -> int:
        """Connections in a row cut off right after the same event."""
        return self._count

    def cut_off(self, event_id: str, topic: str, reason: str) -> str:
        """A connection was closed right after `event_id` was published to `topic`.

        Returns the cause to report: `reason` itself until it happened `repeats` times in a row.
        """
        if event_id == self._event_id:
            self._count += 1
        else:
            self._event_id, self._count = event_id, 1
        if self._count < self._repeats:
            return reason
        cause = (
            f"the broker closes the connection when this event is published to {topic}: "
            f"a topic or payload it refuses? ({self._count} times in a row, event {event_id}; "
            f"last: {reason})"
        )
        if self._reported != event_id:
            self._reported = event_id
            log.warning("destination %s: %s", self._name, cause)
        return cause

    def clear(self) -> None:
        """A connection ended otherwise (or an event got through): start counting afresh."""
        self._event_id, self._count, self._reported = None, 0, None
