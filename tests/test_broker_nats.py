"""NATS (2.9, JetStream and its MQTT listener) as the plant's broker, started by the test.

NATS refuses a '.' inside a topic level by closing the connection: with topic_style = "slashed"
everything arrives; with the default "dotted" the agent names the topic it is cut off on. NATS
speaks MQTT 3.1.1 only: an MQTT 5 destination gets a clear error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import pytest
from agent_harness import running_agent
from broker_scenarios import (
    broker_killed_mid_stream_loses_nothing,
    commands_are_answered,
    config_for,
    scans_arrive_in_order,
    will_says_offline,
    write_scans,
)
from broker_support import NATS_MISSING, NatsBroker, nats_binary
from destination_support import destination
from support import wait_until

from agent.cli.doctor_mqtt import check_mqtt
from agent.cli.findings import Status
from agent.runtime.commands import CommandListener
from agent.web.auth import AuditLog
from sync.base import SinkUnavailable
from sync.mqtt import MqttDestinationConfig, MqttSink
from sync.topics import Topics

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from support import Pty

    from agent.batches.work_orders import WorkOrderCommand

pytestmark = [
    pytest.mark.brokers,
    pytest.mark.skipif(nats_binary() is None, reason=NATS_MISSING),
]


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsBroker]:
    """A nats-server of this test's own (JetStream in tmp_path, MQTT on a free port)."""
    workdir = tmp_path / "nats"
    workdir.mkdir()
    broker = NatsBroker(workdir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def test_scans_arrive_in_order_with_slashed_topics(
    tmp_path: Path, nats: NatsBroker, pty: Pty
) -> None:
    await scans_arrive_in_order(tmp_path, nats, pty, count=300, style="slashed")


async def test_the_will_publishes_the_retained_offline_state(nats: NatsBroker) -> None:
    await will_says_offline(nats, style="slashed", client_id="lineside-victim-nats")


async def test_nats_killed_and_restarted_mid_stream_loses_nothing(
    tmp_path: Path, nats: NatsBroker, pty: Pty
) -> None:
    await broker_killed_mid_stream_loses_nothing(tmp_path, nats, pty, count=300, style="slashed")


async def test_dotted_topics_cut_off_by_nats_are_named_not_quarantined(
    tmp_path: Path, nats: NatsBroker, pty: Pty, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    topic = "lineside/v1/plant-a/line-3/goods.received"
    config = config_for(tmp_path, nats, pty, style="dotted")
    async with running_agent(config) as agent:
        await write_scans(pty, ["DOTTED-1"])
        await wait_until(
            lambda: topic in (destination(agent, "plant-broker").last_error or ""),
            timeout=60,
            what="the cut-off named as the destination's last error",
        )
        shown = destination(agent, "plant-broker")
        assert shown.last_error is not None
        assert shown.last_error.startswith(
            f"plant-broker: the broker closes the connection when this event is published to "
            f"{topic}: a topic or payload it refuses?"
        )
        assert agent.publishers[0].health.quarantined == 0  # not refused: kept and retried
        assert agent.publishers[0].health.backlog >= 1
    logged = [r.getMessage() for r in caplog.records if "closes the connection" in r.getMessage()]
    assert any(topic in line for line in logged), logged
    assert "not supported for MQTT topics" in (nats.log.read_text())


async def test_mqtt5_to_nats_says_to_use_3_1_1(nats: NatsBroker) -> None:
    config = MqttDestinationConfig(name="nats", kind="mqtt", url=nats.url, protocol="5")
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
    assert "does not speak MQTT 5" in str(info.value)
    assert 'set protocol = "3.1.1"' in str(info.value)


@pytest.mark.parametrize(
    ("settings", "status", "said", "hint"),
    [
        pytest.param(
            {"protocol": "3.1.1", "topic_style": "slashed"},
            Status.OK,
            "test message to lineside/v1/plant-a/line-3/doctor/check acknowledged, received back"
            "; retained messages work",
            "",
            id="slashed",
        ),
        pytest.param(
            {"protocol": "3.1.1"},
            Status.FAIL,
            "the broker closed the connection on a test message to "
            "lineside/v1/plant-a/line-3/doctor.check: a topic it refuses?",
            'set topic_style = "slashed"',
            id="dotted",
        ),
        pytest.param(
            {"protocol": "5", "topic_style": "slashed"},
            Status.FAIL,
            "does not speak MQTT 5",
            'set protocol = "3.1.1"',
            id="mqtt5",
        ),
    ],
)
async def test_doctor_says_what_nats_did(
    nats: NatsBroker, settings: dict[str, str], status: Status, said: str, hint: str
) -> None:
    dest = MqttDestinationConfig.model_validate(
        {"name": "nats", "kind": "mqtt", "url": nats.url, **settings}
    )
    finding = await check_mqtt(dest, dest.topics("plant-a", "line-3"))
    assert finding.status is status, finding
    assert said in finding.detail
    assert hint in finding.hint


async def test_work_order_commands_are_answered(tmp_path: Path, nats: NatsBroker, pty: Pty) -> None:
    await commands_are_answered(tmp_path, nats, pty, style="slashed")


async def test_the_command_listener_says_why_it_cannot_listen(
    tmp_path: Path, nats: NatsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agent.runtime.commands")
    dest = MqttDestinationConfig(name="nats", kind="mqtt", url=nats.url, protocol="5")

    async def on_work_order(command: WorkOrderCommand) -> None:
        raise AssertionError(command)

    listener = CommandListener(
        dest,
        dest.topics("plant-a", "line-3"),
        client_id="lineside-cmd-v5",
        on_work_order=on_work_order,
        audit=AuditLog(tmp_path / "audit.log"),
    )
    task = asyncio.create_task(listener.run(), name="commands")
    try:
        await wait_until(
            lambda: any("cannot reach the broker" in r.getMessage() for r in caplog.records),
            what="the listener's warning",
        )
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    lines = [r.getMessage() for r in caplog.records if "cannot reach" in r.getMessage()]
    assert len(lines) == 1, lines  # once, not at every retry
    assert "does not speak MQTT 5" in lines[0]
    assert 'set protocol = "3.1.1"' in lines[0]


async def test_a_state_topic_nats_refuses_is_named(nats: NatsBroker) -> None:
    config = MqttDestinationConfig(
        name="nats", kind="mqtt", url=nats.url, protocol="3.1.1", topic_prefix="lineside.v1"
    )
    sink = MqttSink(
        config,
        topics=config.topics("plant-a", "line-3"),
        client_id="lineside-dotted-prefix",
        online_payload=b"{}",
        offline_payload=b"{}",
    )
    with pytest.raises(SinkUnavailable) as info:
        async with sink:
            pass
    assert (
        "the broker closed the connection before answering the CONNECT (its retained will to "
        "lineside.v1/plant-a/line-3/state: a topic it refuses, or retained messages off?"
    ) in str(info.value)


async def test_doctor_names_a_dotted_prefix_nats_refuses(nats: NatsBroker) -> None:
    dest = MqttDestinationConfig(
        name="nats", kind="mqtt", url=nats.url, protocol="3.1.1", topic_prefix="lineside.v1"
    )
    finding = await check_mqtt(dest, dest.topics("plant-a", "line-3"))
    assert finding.status is Status.FAIL, finding
    assert (
        "the broker refuses a connect with a retained will to lineside.v1/plant-a/line-3/doctor"
    ) in finding.detail
    assert "keep it out of topic_prefix" in finding.hint
