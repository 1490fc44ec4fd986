"""What every broker the README calls tested must do, over MQTT 3.1.1, counted, not hoped.

Each scenario takes a running broker of `broker_support` (or mosquitto) and the pieces a test
fixture gives it: the agent (in this process, a pty scanner at an inbound dock) delivers scans
to it and an independent subscriber (persistent session, QoS 1) counts what arrives.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import aiomqtt
from agent_harness import running_agent, write_config
from support import subscriber, wait_until
from tcp_gate import TcpGate
from test_e2e_batches import plc_section, tcp

from drivers.simulators.modbus_plc import FillingLineSimulator
from sync.topics import TOPIC_STYLES, Topics

if TYPE_CHECKING:
    from support import Collected, MqttBroker, Pty

    from sync.topics import TopicStyle

REPO = Path(__file__).resolve().parent.parent
TOPICS = {style: Topics.of("lineside/v1", "plant-a", "line-3", style) for style in TOPIC_STYLES}


class Restartable(Protocol):
    """A broker a scenario may kill and start again."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """The broker's address as a Lineside destination url."""
        ...

    def kill(self) -> None:
        """SIGKILL the broker."""

    def start(self) -> None:
        """Start it again on the same port and storage."""


def config_for(
    tmp_path: Path,
    broker: MqttBroker,
    pty: Pty,
    *,
    style: TopicStyle,
    protocol: str = "3.1.1",
    extra: str = "",
) -> Path:
    """The agent's config: one inbound pty scanner, `broker` as its one destination."""
    path = write_config(tmp_path, broker, {"dock-in-1": ("inbound", pty)}, extra=extra)
    text = path.read_text().replace(
        'kind = "mqtt"\n',
        f'kind = "mqtt"\nprotocol = "{protocol}"\ntopic_style = "{style}"\nkeepalive = 5\n',
    )
    path.write_text(text)
    return path


def events(got: Collected, topics: Topics) -> list[dict[str, Any]]:
    """The envelopes the subscriber got, each checked to have come on its type's topic."""
    found = []
    for topic, payload, _ in got.messages:
        if topics.event_type(topic) is None or not payload:
            continue
        envelope = json.loads(payload)
        assert topic == topics.event(envelope["type"]), (topic, envelope["type"])
        found.append(envelope)
    return found


def scans(got: Collected, topics: Topics) -> list[str]:
    """The raw text of every goods.received the subscriber got, in arrival order."""
    return [e["data"]["raw"] for e in events(got, topics) if e["type"] == "goods.received"]


async def write_scans(pty: Pty, names: list[str]) -> None:
    """Scan `names` at the pty scanner, as a scanner would (not all in one burst)."""
    for i, name in enumerate(names):
        pty.write(f"{name}\r\n".encode())
        if i % 20 == 19:
            await asyncio.sleep(0.01)


async def scans_arrive_in_order(
    tmp_path: Path,
    broker: MqttBroker,
    pty: Pty,
    *,
    count: int,
    style: TopicStyle,
    seen_as: TopicStyle | None = None,
) -> None:
    """`count` scans all arrive, once each, in order, on the style's topics; state retained.

    `seen_as`: the style subscribers see the topics in, where the broker rewrites them
    (RabbitMQ 3.10 takes a '.' in a topic for a level separator).
    """
    topics = TOPICS[seen_as or style]
    names = [f"ORDER-{i:05d}" for i in range(count)]
    async with running_agent(config_for(tmp_path, broker, pty, style=style)) as agent:
        async with subscriber(broker, topics.everything) as got:
            await write_scans(pty, names)
            await got.wait_for(lambda g: len(scans(g, topics)) >= count, timeout=60)
        assert scans(got, topics) == names
        seqs = [int(e["seq"]) for e in events(got, topics)]
        assert seqs == sorted(seqs), "not in seq order"
        # The retained state, for a subscriber that comes later (on the exact topic: RabbitMQ
        # 3.10 hands retained messages only to subscriptions without wildcards).
        async with subscriber(broker, topics.state) as state:
            await state.wait_for(lambda g: any(retained for _, _, retained in g.messages))
        _, payload, _ = next(m for m in state.messages if m[2])
        assert json.loads(payload)["online"] is True
        assert agent.publishers[0].health.quarantined == 0


VICTIM = """
import asyncio, sys
from sync.mqtt import MqttDestinationConfig, MqttSink
from sync.topics import Topics

async def main() -> None:
    cfg = MqttDestinationConfig(
        name="d", kind="mqtt", url=sys.argv[1], keepalive=5, protocol="3.1.1",
        topic_style=sys.argv[3],
    )
    topics = cfg.topics("plant-a", "line-3")
    async with MqttSink(cfg, topics=topics, client_id=sys.argv[2],
                        online_payload=b'{"online": true}', offline_payload=b'{"online": false}'):
        print("connected", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def will_says_offline(broker: MqttBroker, *, style: TopicStyle, client_id: str) -> None:
    """An agent killed with SIGKILL: the broker publishes its retained offline state (the will)."""
    topics = TOPICS[style]
    victim = await asyncio.create_subprocess_exec(
        sys.executable, "-c", VICTIM, broker.url, client_id, style,
        stdout=subprocess.PIPE, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert victim.stdout is not None
        async with asyncio.timeout(30):
            assert await victim.stdout.readline() == b"connected\n"
        async with subscriber(broker, topics.state) as got:

            def online(g: Collected) -> list[bool]:
                return [json.loads(p)["online"] for _, p, _ in g.messages if p]

            await got.wait_for(lambda g: True in online(g))
            victim.kill()  # SIGKILL: no DISCONNECT, no offline publish: only the will
            await victim.wait()
            await got.wait_for(lambda g: online(g)[-1:] == [False])
    finally:
        if victim.returncode is None:
            victim.kill()
            await victim.wait()
    async with subscriber(broker, topics.state) as later:  # and it is retained
        await later.wait_for(lambda g: any(r for _, _, r in g.messages))
    retained = [json.loads(p) for _, p, r in later.messages if r]
    assert retained[-1] == {"online": False}


async def broker_killed_mid_stream_loses_nothing(
    tmp_path: Path, broker: Restartable, pty: Pty, *, count: int, style: TopicStyle
) -> None:
    """The broker is SIGKILLed and started again while scans stream in: every one arrives.

    The agent reaches the broker through a `TcpGate`, shut while the broker is down and opened
    once the counting subscriber has subscribed again, so the count does not depend on which of
    the two reconnects first (see `tcp_gate`).
    """
    topics = TOPICS[style]
    names = [f"KILL-{i:05d}" for i in range(count)]
    async with (
        TcpGate(broker.host, broker.port) as gate,
        running_agent(config_for(tmp_path, gate, pty, style=style)) as agent,
        subscriber(broker, topics.everything) as got,
    ):
        third = count // 3
        await write_scans(pty, names[:third])
        await got.wait_for(lambda g: len(scans(g, topics)) >= third // 2, timeout=60)
        subscribed = got.subscriptions
        broker.kill()  # while the first third is still arriving, perhaps
        gate.shut()
        await write_scans(pty, names[third : 2 * third])
        broker.start()
        await got.wait_for(lambda g: g.subscriptions > subscribed, timeout=60)
        gate.open()
        await write_scans(pty, names[2 * third :])
        try:
            await wait_until(
                lambda: set(scans(got, topics)) >= set(names),
                timeout=90,
                what=f"{count} scans through a broker killed mid-stream",
            )
        except AssertionError as exc:  # say which ones, and whether the broker acknowledged them
            missing = sorted(set(names) - set(scans(got, topics)))
            health = agent.publishers[0].health
            message = (
                f"{exc}: {len(missing)} missing ({missing[:5]}); the agent's destination: "
                f"{health.delivered} acknowledged by the broker, backlog {health.backlog}"
            )
            raise AssertionError(message) from None
        assert agent.publishers[0].health.reconnects >= 1
    arrived = scans(got, topics)
    lost = [n for n in names if n not in set(arrived)]
    assert lost == [], f"{len(lost)} of {count} scans lost: {lost[:5]}"
    first_seen = list(dict.fromkeys(arrived))
    assert first_seen == names, "not in scan order"


async def commands_are_answered(
    tmp_path: Path, broker: MqttBroker, pty: Pty, *, style: TopicStyle
) -> None:
    """The MES's work order over this broker is applied and answered on its reply topic."""
    topics = TOPICS[style]
    async with FillingLineSimulator(port=0, auto=False, seed=3) as sim:
        extra = plc_section(tcp(sim))
        config = config_for(tmp_path, broker, pty, style=style, extra=extra)
        async with running_agent(config) as agent:
            await wait_until(lambda: agent.commands is not None and agent.commands.connected)
            async with aiomqtt.Client(broker.host, broker.port, identifier="mes-1") as mes:
                await mes.subscribe(topics.reply("work-order"), qos=1)
                body = json.dumps({"work_order": "WO-BROKER-1"}).encode()
                await mes.publish(topics.command("work-order"), body, qos=1)
                async with asyncio.timeout(20):
                    message = await anext(aiter(mes.messages))
            assert str(message.topic) == topics.reply("work-order")
            assert isinstance(message.payload, bytes)
            assert json.loads(message.payload) == {"ok": True, "work_order": "WO-BROKER-1"}
