"""`lineside doctor` against a real mosquitto: the test message, retained messages, MQTT 5.

Brokers that refuse a topic shape or MQTT 5 are checked in test_broker_nats.py and
test_broker_rabbitmq.py, against those brokers.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import aiomqtt
import pytest
from support import STAY_ROOT, Broker, subscriber

from agent.cli.doctor_mqtt import check_mqtt
from agent.cli.findings import Status
from sync.mqtt_config import MqttDestinationConfig

if TYPE_CHECKING:
    from pathlib import Path

    from support import MqttBroker

BASE = "lineside/v1/plant-a/line-3"


def destination(broker: MqttBroker, **settings: str) -> MqttDestinationConfig:
    return MqttDestinationConfig.model_validate(
        {"name": "plant-broker", "kind": "mqtt", "url": broker.url, **settings}
    )


@pytest.mark.parametrize(
    ("style", "topic"),
    [("dotted", f"{BASE}/doctor.check"), ("slashed", f"{BASE}/doctor/check")],
)
async def test_the_test_message_goes_to_the_configured_topic_shape(
    broker: Broker, style: str, topic: str
) -> None:
    dest = destination(broker, topic_style=style)
    async with subscriber(broker, f"{BASE}/#") as got:
        finding = await check_mqtt(dest, dest.topics("plant-a", "line-3"))
        await got.wait_for(lambda g: any(t == topic for t, _, _ in g.messages))
    assert finding.status is Status.OK, finding
    assert f"test message to {topic} acknowledged, received back" in finding.detail
    assert "retained messages work" in finding.detail
    # and it leaves no retained message behind
    left: list[str] = []
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(f"{BASE}/#")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1):
                left.extend([str(message.topic) async for message in client.messages])
    assert left == []


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_retained_messages_off_is_named(tmp_path: Path, protocol: str) -> None:
    off = Broker(tmp_path, extra_config="retain_available false\n")
    off.start()
    try:
        dest = destination(off, protocol=protocol, connect_timeout="3")
        finding = await check_mqtt(dest, dest.topics("plant-a", "line-3"))
    finally:
        off.stop()
    assert finding.status is Status.FAIL, finding
    assert "retained messages off" in finding.detail
    assert "retain_available true" in finding.hint


async def test_an_acl_refusal_of_the_test_topic_is_named(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite {BASE}/state\ntopic readwrite {BASE}/doctor\n")
    strict = Broker(tmp_path, extra_config=f"{STAY_ROOT}acl_file {acl}\n")
    strict.start()
    try:
        dest = destination(strict)
        finding = await check_mqtt(dest, dest.topics("plant-a", "line-3"))
    finally:
        strict.stop()
    assert finding.status is Status.FAIL, finding
    assert f"refused a test message to {BASE}/doctor.check" in finding.detail
    assert "ACL" in finding.hint
