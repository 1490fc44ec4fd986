"""The MQTT topic contract, spelled once (CONTRACTS.md "MQTT", "Brokers that scale").

Every topic of one node sits below ``{topic_prefix}/{site}/{node}``:

- ``…/{type}``: events. `topic_style` ``"dotted"`` (the default) keeps the event type as it is
  (``…/goods.received``); ``"slashed"`` writes its dots as topic levels (``…/goods/received``)
  for brokers that refuse a ``.`` inside a level (NATS's MQTT listener);
- ``…/state``: the agent's retained state, and its will;
- ``…/cmd/{name}``: commands to the agent, answered on ``…/cmd/{name}/reply``.

`state` and `cmd/…` hold no dot and are the same in both styles. The sink, the command listener,
doctor and the demo all take their topics from a `Topics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TopicStyle = Literal["dotted", "slashed"]
TOPIC_STYLES: tuple[TopicStyle, ...] = ("dotted", "slashed")

STATE = "state"
COMMANDS = "cmd"
REPLY = "reply"


@dataclass(frozen=True, slots=True)
class Topics:
    """The topics of one node on one broker."""

    base: str
    """``{topic_prefix}/{site}/{node}``."""
    style: TopicStyle = "dotted"

    @classmethod
    def of(cls, prefix: str, site: str, node: str, style: TopicStyle = "dotted") -> Topics:
        """The topics of node `node` of site `site` below `prefix`."""
        return cls(f"{prefix}/{site}/{node}", style)

    def event(self, event_type: str) -> str:
        """The topic an event of `event_type` is published to."""
        level = event_type.replace(".", "/") if self.style == "slashed" else event_type
        return f"{self.base}/{level}"

    def event_type(self, topic: str) -> str | None:
        """The event type a topic below `base` carries (None for state, commands, others)."""
        head = f"{self.base}/"
        if not topic.startswith(head):
            return None
        rest = topic[len(head) :]
        if rest in {STATE, COMMANDS} or rest.startswith(f"{COMMANDS}/"):
            return None
        return rest.replace("/", ".") if self.style == "slashed" else rest

    @property
    def state(self) -> str:
        """The agent's retained state (and will)."""
        return f"{self.base}/{STATE}"

    @property
    def commands(self) -> str:
        """The subscription that receives every command to this node."""
        return f"{self.base}/{COMMANDS}/+"

    def command(self, name: str) -> str:
        """The topic command `name` is sent on."""
        return f"{self.base}/{COMMANDS}/{name}"

    def command_name(self, topic: str) -> str:
        """The command name a received command topic carries (its last level)."""
        return topic.rsplit("/", 1)[-1]

    def reply(self, name: str) -> str:
        """The topic the answer to command `name` is published on."""
        return f"{self.base}/{COMMANDS}/{name}/{REPLY}"

    @property
    def everything(self) -> str:
        """The subscription that sees every topic of this node (events, state, commands)."""
        return f"{self.base}/#"
