"""The agent's `health` in its retained MQTT state, for the plant view's fleet (CONTRACTS.md).

`{topic_prefix}/{site}/{node}/state` carries, besides `online` and `version`, a `health`
object: `devices` (id → connected), `backlog` (destination → undelivered events), `alarms`
(active count) and `last_seq`. `HealthPublisher` (the runtime task `health`) samples it once
a second and publishes it through every MQTT sink's `RetainedState` when it changed, and at
least every `REFRESH_S` seconds, so a plant view can tell a live node with old figures from a
stale one.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from agent.alarms import AlarmBoard
    from drivers.base import DeviceHealth
    from sync.mqtt_state import RetainedState
    from sync.outbox import Outbox
    from sync.publisher import Publisher

REFRESH_S = 30.0
SAMPLE_S = 1.0


def state_payload(
    *, online: bool, version: str = "", health: dict[str, Any] | None = None
) -> bytes:
    """The retained agent-state message."""
    body: dict[str, object] = {"online": online}
    if online and version:
        body["version"] = version
    if online and health is not None:
        body["health"] = health
    return json.dumps(body, separators=(",", ":")).encode()


class HealthPublisher:
    """Keeps the retained online state's `health` current (see the module docstring)."""

    def __init__(
        self,
        board: RetainedState,
        *,
        version: str,
        devices: Callable[[], Sequence[DeviceHealth]],
        publishers: Sequence[Publisher],
        alarms: AlarmBoard,
        outbox: Outbox,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._board = board
        self._version = version
        self._devices = devices
        self._publishers = publishers
        self._alarms = alarms
        self._outbox = outbox
        self._clock = clock

    def health(self) -> dict[str, Any]:
        """The `health` object now."""
        return {
            "devices": {d.device: d.connected for d in self._devices()},
            "backlog": {p.name: p.health.backlog for p in self._publishers},
            "alarms": len(self._alarms.active()),
            "last_seq": self._outbox.last_seq,
        }

    def payload(self) -> bytes:
        """The online state document with the health now."""
        return state_payload(online=True, version=self._version, health=self.health())

    async def run(self) -> None:
        """Publish on change (sampled every `SAMPLE_S`) and at least every `REFRESH_S`."""
        sent: bytes | None = None
        sent_at = float("-inf")
        while True:
            payload = self.payload()
            self._board.payload = payload  # a sink connecting now publishes the newest
            due = payload != sent or self._clock() - sent_at >= REFRESH_S
            if due and await self._board.publish(payload):
                sent, sent_at = payload, self._clock()
            await asyncio.sleep(SAMPLE_S)
