"""Each configured destination's sink (a plain `match` over the config's kind) and its log line.

`DestinationLog` writes one line per destination with the figures the status page shows
(delivered, backlog, oldest undelivered age, quarantined, last error): when its state changes
(up/down, a new error) and otherwise every `period_s` (60 s), so an unattended log tells how
each destination did without the page.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from agent.runtime.health import state_payload
from sync.files import FileDestinationConfig, FileSink
from sync.http import HttpDestinationConfig, HttpSink
from sync.mqtt import MqttDestinationConfig, MqttSink
from sync.mqtt_cutoff import CutOffWatch
from sync.postgres import PostgresSink
from sync.postgres_config import PostgresDestinationConfig

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from agent.config import Config
    from agent.config.destinations import DestinationConfig
    from sync.base import Sink
    from sync.mqtt_state import RetainedState
    from sync.publisher import DestinationHealth
    from sync.topics import Topics

log = logging.getLogger(__name__)

DESTINATION_LOG_PERIOD_S = 60.0


def node_topics(config: Config, dest: MqttDestinationConfig) -> Topics:
    """This node's topics on `dest`'s broker (events, state, commands), in its topic style."""
    return dest.topics(config.agent.site, config.agent.node)


def sink_factory(
    config: Config, dest: DestinationConfig, *, version: str, state: RetainedState | None = None
) -> Callable[[], Sink]:
    """A function that makes a fresh sink (connection) for `dest` each time it is called.

    `state` is the agent's retained online document, shared by its MQTT sinks (its health).
    """
    match dest:
        case MqttDestinationConfig():
            mqtt = dest
            topics = node_topics(config, mqtt)
            cut_offs = CutOffWatch(mqtt.name)  # outlives each connection's sink
            client_id = (
                mqtt.client_id or f"lineside-{config.agent.site}-{config.agent.node}-{mqtt.name}"
            )
            online = state_payload(online=True, version=version)
            offline = state_payload(online=False)
            return lambda: MqttSink(
                mqtt,
                topics=topics,
                client_id=client_id,
                online_payload=online,
                offline_payload=offline,
                state=state,
                cut_offs=cut_offs,
            )
        case HttpDestinationConfig():
            http = dest
            return lambda: HttpSink(http)
        case FileDestinationConfig():
            files = dest
            return lambda: FileSink(files)
        case PostgresDestinationConfig():
            postgres = dest
            return lambda: PostgresSink(postgres)


def describe_health(health: DestinationHealth) -> str:
    """One line of a destination's figures, as `DestinationLog` writes it."""
    state = "up" if health.connected else "down" if health.last_error else "connecting"
    oldest = health.oldest_undelivered_age_s
    return (
        f"destination {health.name}: {state}, delivered {health.delivered}, "
        f"backlog {health.backlog} ({health.backlog_bytes} bytes), "
        f"oldest {'-' if oldest is None else f'{oldest:.1f} s'}, "
        f"quarantined {health.quarantined}, last error: {health.last_error or '-'}"
    )


class DestinationLog:
    """Logs each destination's figures on a state change and every `period_s` otherwise."""

    def __init__(
        self,
        *,
        period_s: float = DESTINATION_LOG_PERIOD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._period_s = period_s
        self._clock = clock
        self._logged: dict[str, tuple[float, tuple[bool, str | None]]] = {}

    def sample(self, healths: Iterable[DestinationHealth]) -> None:
        """Look at the destinations' health now; log those that changed or are due."""
        now = self._clock()
        for health in healths:
            state = (health.connected, health.last_error)
            before = self._logged.get(health.name)
            if before is not None and before[1] == state and now - before[0] < self._period_s:
                continue
            self._logged[health.name] = (now, state)
            failing = not health.connected and health.last_error is not None
            log.log(logging.WARNING if failing else logging.INFO, "%s", describe_health(health))
