"""The agent's retained online state, shared by its MQTT sinks so that it can change while up.

`RetainedState` holds the newest online document; each connected `MqttSink` is one of its
`sinks` (a `StatePublisher`) and publishes it retained on `{topic_base}/state`.
"""

from __future__ import annotations

import logging
from typing import Protocol

from sync.base import SinkUnavailable

log = logging.getLogger(__name__)


class StatePublisher(Protocol):
    """A connected sink that can publish the state document (`MqttSink`)."""

    async def publish_state(self, payload: bytes) -> None:
        """Publish `payload` retained; `SinkUnavailable` when it cannot."""
        ...


class RetainedState:
    """The agent's online state document, which every connected `MqttSink` keeps retained.

    A sink publishes `payload` when it connects and joins `sinks`; `publish` sends a new
    document through every connected sink (one that fails is skipped: it publishes the newest
    document when it connects again). The will stays the sink's offline document.
    """

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.sinks: set[StatePublisher] = set()

    async def publish(self, payload: bytes) -> int:
        """Make `payload` the state and publish it; how many sinks published it."""
        self.payload = payload
        published = 0
        for sink in list(self.sinks):
            try:
                await sink.publish_state(payload)
            except SinkUnavailable as exc:
                log.debug("%r: state not published: %s", sink, exc)
            else:
                published += 1
        return published
