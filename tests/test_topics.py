"""The topic contract spelled once: both topic styles, their config, and the paho pins."""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiomqtt
import pytest
from test_config import MINIMAL, problems

from agent.config import load_config
from sync.mqtt_config import MqttDestinationConfig
from sync.mqtt_cutoff import CutOffWatch
from sync.mqtt_paho import CHECKED_WITH, abandon, checked_versions, paho_of
from sync.topics import Topics

if TYPE_CHECKING:
    from pathlib import Path

BASE = "lineside/v1/plant-a/line-3"


@pytest.mark.parametrize(
    ("style", "topic"),
    [
        ("dotted", f"{BASE}/goods.received"),
        ("slashed", f"{BASE}/goods/received"),
    ],
)
def test_event_topics_in_both_styles_and_back(style: str, topic: str) -> None:
    topics = MqttDestinationConfig(name="b", kind="mqtt", url="mqtt://h", topic_style=style).topics(
        "plant-a", "line-3"
    )
    assert topics.event("goods.received") == topic
    assert topics.event_type(topic) == "goods.received"
    # state and commands are the same in both styles (CONTRACTS.md "Brokers that scale")
    assert topics.state == f"{BASE}/state"
    assert topics.commands == f"{BASE}/cmd/+"
    assert topics.command("work-order") == f"{BASE}/cmd/work-order"
    assert topics.reply("work-order") == f"{BASE}/cmd/work-order/reply"
    assert topics.command_name(f"{BASE}/cmd/work-order") == "work-order"
    assert topics.everything == f"{BASE}/#"
    assert topics.event_type(topics.state) is None
    assert topics.event_type(topics.reply("work-order")) is None
    assert topics.event_type("elsewhere/goods.received") is None


def test_dotted_is_the_default() -> None:
    config = MqttDestinationConfig(name="b", kind="mqtt", url="mqtt://h")
    assert config.topic_style == "dotted"
    assert config.topics("s", "n") == Topics("lineside/v1/s/n", "dotted")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            MINIMAL + 'topic_style = "dashed"\n',
            "destinations[0].topic_style: must be one of 'dotted', 'slashed'",
            id="unknown-style",
        ),
        pytest.param(
            MINIMAL + 'topic_style = "slashed"\ntopic_prefix = "lineside.v1"\n',
            'topic_prefix: has a "."',
            id="dotted-prefix",
        ),
        pytest.param(
            MINIMAL.replace('node = "line-3"', 'node = "line.3"') + 'topic_style = "slashed"\n',
            'agent.node: has a "."',
            id="dotted-node",
        ),
        pytest.param(
            MINIMAL
            + "commands = true\n"
            + '[[destinations]]\nname = "b2"\nkind = "mqtt"\nurl = "mqtt://h"\ncommands = true\n',
            "destinations[1].commands: only one broker carries commands",
            id="two-command-brokers",
        ),
    ],
)
def test_bad_topic_settings_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert any(expected in line for line in found), found


def test_commands_come_from_the_marked_broker_else_the_first(tmp_path: Path) -> None:
    second = '\n[[destinations]]\nname = "b2"\nkind = "mqtt"\nurl = "mqtt://h2"\n'
    path = tmp_path / "lineside.toml"
    path.write_text(MINIMAL + second)
    broker = load_config(path).command_broker
    assert broker is not None
    assert broker.name == "plant-broker"
    path.write_text(MINIMAL + second + "commands = true\n")
    broker = load_config(path).command_broker
    assert broker is not None
    assert broker.name == "b2"
    path.write_text(MINIMAL + "commands = false\n")
    assert load_config(path).command_broker is None


def test_a_cut_off_is_named_only_after_the_same_event_in_a_row() -> None:
    watch = CutOffWatch("nats", repeats=3)
    topic = f"{BASE}/goods.received"
    assert watch.cut_off("E1", topic, "lost") == "lost"
    assert watch.cut_off("E1", topic, "lost") == "lost"
    cause = watch.cut_off("E1", topic, "lost")
    assert cause.startswith(
        f"the broker closes the connection when this event is published to {topic}: "
        "a topic or payload it refuses?"
    )
    assert "3 times in a row, event E1" in cause
    watch.clear()  # a PUBACK came, or the link dropped otherwise: a flapping network
    assert watch.cut_off("E1", topic, "lost") == "lost"
    assert watch.cut_off("E2", topic, "lost") == "lost"  # another event first: count afresh
    assert watch.count == 1


async def test_the_paho_adapter_is_checked_against_the_installed_versions() -> None:
    """`sync.mqtt_paho` reaches into aiomqtt and paho: a new minor version must be re-checked.

    When this fails after an upgrade, read `paho_of` and `abandon` against the new sources (the
    private ``_client``, ``_sock_close`` and ``_disconnected``), then update `CHECKED_WITH`.
    """
    assert checked_versions() == CHECKED_WITH
    client = aiomqtt.Client("127.0.0.1", 1)
    inner = paho_of(client)
    assert callable(inner.publish)
    assert callable(inner._sock_close)
    assert not client._disconnected.done()
    abandon(client)  # on a client that never connected: nothing to close, no error
