"""The agents' live state as the plant broker holds it: `{prefix}/{site}/+/state`, retained.

`NodeStates.run` subscribes to every node's retained state document of one site and keeps the
newest of each (`online`, `version`, `health`) with the time it arrived; the agent's MQTT will
makes a node that vanished `online: false` at once (a killed process's socket is closed by its
kernel) or, for a lost network, after the broker's keep-alive. A document is untrusted input:
at most `MAX_STATE_BYTES`, parsed as JSON, only the known fields kept, each checked for its
type; anything else is counted and dropped. The connection is retried with full-jitter backoff
for ever; while it is down `connected` is false and the page says the live state is unknown.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiomqtt

from sync.secrets import read_optional_secret

if TYPE_CHECKING:
    from agent.plant.config import PlantBroker

log = logging.getLogger(__name__)

MAX_STATE_BYTES = 64 * 1024
MAX_NODES = 10_000
_MAX_ITEMS = 1000  # devices or destinations in one health document


@dataclass(frozen=True, slots=True)
class NodeState:
    """One node's newest retained state document, as far as it could be read."""

    node: str
    online: bool
    received: datetime
    version: str | None = None
    health: dict[str, Any] | None = None


def _counts(value: object, kind: type) -> dict[str, Any] | None:
    if not isinstance(value, dict) or len(value) > _MAX_ITEMS:
        return None
    return {str(k)[:128]: v for k, v in value.items() if isinstance(v, kind)}


def parse_state(node: str, payload: bytes, received: datetime) -> NodeState | None:
    """The state document of `node`, or None when it is not one."""
    if len(payload) > MAX_STATE_BYTES:
        return None
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("online"), bool):
        return None
    version = body.get("version")
    raw = body.get("health")
    health: dict[str, Any] | None = None
    if isinstance(raw, dict):
        alarms, last_seq = raw.get("alarms"), raw.get("last_seq")
        health = {
            "devices": _counts(raw.get("devices"), bool),
            "backlog": _counts(raw.get("backlog"), int),
            "alarms": alarms if isinstance(alarms, int) and not isinstance(alarms, bool) else None,
            "last_seq": last_seq
            if isinstance(last_seq, int) and not isinstance(last_seq, bool)
            else None,
        }
    return NodeState(
        node=node,
        online=body["online"],
        received=received,
        version=str(version)[:64] if isinstance(version, str) else None,
        health=health,
    )


@dataclass
class NodeStates:
    """Every node's newest state document of one site, kept current from the broker."""

    broker: PlantBroker
    site: str
    nodes: dict[str, NodeState] = field(default_factory=dict)
    connected: bool = False
    last_error: str | None = None
    dropped: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def topic(self) -> str:
        """The subscription: every node's state topic of the site."""
        return f"{self.broker.topic_prefix}/{self.site}/+/state"

    def receive(self, topic: str, payload: bytes) -> None:
        """Take one message of the state topics."""
        parts = topic.split("/")
        node = parts[-2] if len(parts) >= 2 else ""  # noqa: PLR2004
        if not node:
            return
        if not payload:  # a retained state cleared
            self.nodes.pop(node, None)
            return
        state = parse_state(node, payload, datetime.now(UTC))
        if state is None or (node not in self.nodes and len(self.nodes) >= MAX_NODES):
            self.dropped += 1
            log.debug("state of %r dropped (not a state document, or too many nodes)", node)
            return
        self.nodes[node] = state
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self) -> None:
        """Wait for the next state document taken."""
        await self._changed.wait()

    async def run(self) -> None:
        """Follow the broker for ever (reconnecting with full-jitter backoff)."""
        attempt = 0
        while True:
            try:
                await self._follow()
            except (aiomqtt.MqttError, OSError) as exc:
                if self.connected:  # it was up: start the backoff again
                    attempt = 0
                self.connected = False
                self.last_error = str(exc) or type(exc).__name__
                log.warning("plant broker %s: %s", self.broker.url, self.last_error)
            attempt += 1
            await asyncio.sleep(random.uniform(0, min(30.0, 1.5 ** min(10, attempt))))  # noqa: S311

    async def _follow(self) -> None:
        secret = read_optional_secret(self.broker.password_file)
        password = None if secret is None else secret.get_secret_value()
        async with aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username=self.broker.username,
            password=password,
            timeout=10,
        ) as client:
            await client.subscribe(self.topic, qos=1)
            self.connected, self.last_error = True, None
            log.info("plant broker %s: following %s", self.broker.url, self.topic)
            async for message in client.messages:
                payload = message.payload
                if isinstance(payload, bytes | bytearray):
                    self.receive(str(message.topic), bytes(payload))
                else:
                    self.dropped += 1
