"""RabbitMQ (3.10, its MQTT plugin) as the plant's broker: one node of the module's own.

Booting a node takes 10-30 s, so the tests of this module share one (each with its own client
ids and subscriber sessions). RabbitMQ takes both topic styles, but it maps MQTT's '/' to '.'
in AMQP routing keys and a '.' comes back as a level separator: subscribers see
`.../goods/received` in both styles (so "slashed" is what they should be told). RabbitMQ 3.10
speaks MQTT 3.1.1 only and closes the connection on an MQTT 5 CONNECT; it hands retained
messages only to subscriptions without wildcards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from broker_scenarios import (
    broker_killed_mid_stream_loses_nothing,
    commands_are_answered,
    scans_arrive_in_order,
    will_says_offline,
)
from broker_support import RABBITMQ_MISSING, RabbitBroker, rabbitmq_installed

from agent.cli.doctor_mqtt import check_mqtt
from agent.cli.findings import Status
from sync.base import SinkUnavailable
from sync.mqtt import MqttDestinationConfig, MqttSink
from sync.topics import Topics

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from support import Pty

pytestmark = [
    pytest.mark.brokers,
    pytest.mark.skipif(not rabbitmq_installed(), reason=RABBITMQ_MISSING),
]


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitBroker]:
    """A RabbitMQ node of this module's own (node name, ports, plugins file, data: all temp)."""
    broker = RabbitBroker(tmp_path_factory.mktemp("rabbitmq"))
    broker.start()
    try:
        yield broker
    finally:
        broker.remove()


@pytest.fixture
def running_rabbit(rabbit: RabbitBroker) -> RabbitBroker:
    """The module's node, started again if a test before left it stopped."""
    rabbit.start()
    return rabbit


async def test_scans_arrive_in_order_with_slashed_topics(
    tmp_path: Path, running_rabbit: RabbitBroker, pty: Pty
) -> None:
    await scans_arrive_in_order(tmp_path, running_rabbit, pty, count=200, style="slashed")


async def test_dotted_topics_reach_subscribers_slashed(
    tmp_path: Path, running_rabbit: RabbitBroker, pty: Pty
) -> None:
    """RabbitMQ takes '.' for a level separator: subscribers see .../goods/received either way."""
    await scans_arrive_in_order(
        tmp_path, running_rabbit, pty, count=50, style="dotted", seen_as="slashed"
    )


async def test_the_will_publishes_the_retained_offline_state(running_rabbit: RabbitBroker) -> None:
    await will_says_offline(running_rabbit, style="dotted", client_id="lineside-victim-rabbit")


async def test_mqtt5_to_rabbitmq_3_10_says_to_use_3_1_1(running_rabbit: RabbitBroker) -> None:
    config = MqttDestinationConfig(
        name="rabbit", kind="mqtt", url=running_rabbit.url, protocol="5", connect_timeout=5
    )
    sink = MqttSink(
        config,
        topics=Topics("lineside/v1/plant-a/line-3"),
        client_id="lineside-v5",
        online_payload=b"{}",
        offline_payload=b"{}",
    )
    with pytest.raises(SinkUnavailable) as info:
        async with sink:
            pass
    assert 'set protocol = "3.1.1"' in str(info.value)


async def test_rabbitmq_killed_and_restarted_mid_stream_loses_nothing(
    tmp_path: Path, running_rabbit: RabbitBroker, pty: Pty
) -> None:
    await broker_killed_mid_stream_loses_nothing(
        tmp_path, running_rabbit, pty, count=200, style="slashed"
    )


async def test_doctor_says_rabbitmq_rewrites_dotted_topics(running_rabbit: RabbitBroker) -> None:
    dest = MqttDestinationConfig(
        name="rabbit", kind="mqtt", url=running_rabbit.url, protocol="3.1.1"
    )
    finding = await check_mqtt(dest, dest.topics("plant-a", "line-3"))
    assert finding.status is Status.WARN, finding
    assert (
        "test message to lineside/v1/plant-a/line-3/doctor.check acknowledged, came back on "
        "lineside/v1/plant-a/line-3/doctor/check: the broker rewrites the topic"
    ) in finding.detail
    assert 'topic_style = "slashed"' in finding.hint


async def test_doctor_says_rabbitmq_3_10_does_not_speak_mqtt5(running_rabbit: RabbitBroker) -> None:
    dest = MqttDestinationConfig(
        name="rabbit", kind="mqtt", url=running_rabbit.url, protocol="5", connect_timeout=3
    )
    finding = await check_mqtt(dest, dest.topics("plant-a", "line-3"))
    assert finding.status is Status.FAIL, finding
    assert "does not speak MQTT 5 (it accepted MQTT 3.1.1)" in finding.detail
    assert 'set protocol = "3.1.1"' in finding.hint


async def test_work_order_commands_are_answered(
    tmp_path: Path, running_rabbit: RabbitBroker, pty: Pty
) -> None:
    await commands_are_answered(tmp_path, running_rabbit, pty, style="slashed")
