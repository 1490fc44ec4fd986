"""Commands from the broker can never stop the agent (issue 11, findings 1 and 8).

A real mosquitto, the pymodbus filling-line PLC and the agent (in this loop, or as a process):
hostile payloads get an error reply and leave the agent running; retained commands are refused;
free text and numbers follow one rule; commands are rate-limited and every one is audited.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

import aiomqtt
import pytest
from agent_harness import AgentProcess, running_agent, write_config
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from support import subscriber, wait_until
from test_e2e_batches import plc_section, tcp

from agent.runtime.commands import RATE_LIMITED, RETAINED, CommandListener
from agent.web.auth import AuditLog
from drivers.simulators.modbus_plc import FillingLineSimulator
from sync.mqtt_config import MqttDestinationConfig
from sync.topics import Topics

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from support import Broker, Collected

    from agent.batches.work_orders import WorkOrderCommand

NODE = "lineside/v1/plant-a/line-3"
TOPICS = Topics(NODE)
CMD = TOPICS.command("work-order")
REPLY = TOPICS.reply("work-order")


@pytest.fixture
async def sim() -> AsyncIterator[FillingLineSimulator]:
    async with FillingLineSimulator(port=0, auto=False, seed=3) as s:
        yield s


def client_id_property(client_id: str) -> Properties:
    """MQTT 5 PUBLISH properties carrying the sender's client id, as a broker plugin adds it."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = [("client_id", client_id)]
    return props


async def command(
    broker: Broker,
    body: bytes,
    *,
    topic: str = CMD,
    retain: bool = False,
    properties: Properties | None = None,
) -> dict[str, Any]:
    """Publish one command as the MES does and return the agent's reply."""
    async with aiomqtt.Client(
        broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(f"{topic}/reply", qos=1)
        await client.publish(topic, body, qos=1, retain=retain, properties=properties)
        async with asyncio.timeout(10):
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, bytes)
                reply: dict[str, Any] = json.loads(payload)
                return reply
    raise AssertionError("no reply")


def replies(got: Collected, topic: str = REPLY) -> list[dict[str, Any]]:
    return got.payloads(lambda t: t == topic)


def audit(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- one message, any content: an error reply, never a stop --------------------------------


async def test_hostile_payloads_are_error_replies_and_the_agent_keeps_running(
    tmp_path: Path, broker: Broker, sim: FillingLineSimulator
) -> None:
    config = write_config(tmp_path, broker, {}, extra=plc_section(tcp(sim)))
    async with running_agent(config) as agent:
        await wait_until(lambda: agent.commands is not None and agent.commands.connected)
        # 100,000 nested `[`: the payload; over the cap, it is not even parsed
        assert await command(broker, b"[" * 100_000) == {
            "ok": False,
            "error": "payload too large: 100000 bytes (at most 65536)",
        }
        # under the cap but deeper than the JSON parser goes (RecursionError)
        assert await command(broker, b"[" * 60_000) == {
            "ok": False,
            "error": "payload is nested too deeply",
        }
        assert await command(broker, b'{"work_order": "WO-1", "planned_qty": 5}') == {
            "ok": True,
            "work_order": "WO-1",
        }
        assert agent.batch_lines.named(None).work_order.work_order == "WO-1"
        assert all(r.running for r in agent.state.tasks.values())
    entries = [e for e in audit(tmp_path / "data" / "audit.log") if e["action"] == "command"]
    assert [e["result"] for e in entries] == [
        "refused: payload too large: 100000 bytes (at most 65536)",
        "refused: payload is nested too deeply",
        "ok",
    ]
    assert entries[0]["args"]["topic"] == CMD
    assert entries[0]["args"]["payload"].startswith("[[[[")
    assert entries[0]["args"]["payload"].endswith("...[99800 more bytes]")
    assert entries[2]["args"]["payload"] == '{"work_order": "WO-1", "planned_qty": 5}'


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    (
        {"work_order": "WO\n2026-12-06 INFO forged"},
        "work_order: control character 0x0a at position 2",
    ),
    ({"work_order": "WO\x00"}, "work_order: control character 0x00 at position 2"),
    ({"work_order": "WO\x1b[31m"}, "work_order: control character 0x1b at position 2"),
    ({"work_order": "WO\x7f"}, "work_order: control character 0x7f at position 2"),
    ({"work_order": "WO\x85"}, "work_order: control character 0x85 at position 2"),
    ({"work_order": "WO\u202e1"}, "work_order: non-printing character U+202E at position 2"),
    ({"work_order": "W\u200bO"}, "work_order: non-printing character U+200B at position 1"),
    ({"work_order": "W" * 65}, "work_order: longer than 64 characters (65)"),
    ({"work_order": ""}, "work_order: empty"),
    ({"work_order": 17}, "work_order: Input should be a valid string"),
    ({"lot": "L#1"}, "lot: character '#' at position 1 is not allowed in a GS1 lot (AI 10)"),
    ({"lot": "L 1"}, "lot: character ' ' at position 1 is not allowed in a GS1 lot (AI 10)"),
    ({"lot": "L" * 21}, "lot: longer than 20 characters (21)"),
    ({"lot": "L\u202e"}, "lot: non-printing character U+202E at position 1"),
    ({"planned_qty": "1000"}, "planned_qty: Input should be a valid integer"),
    ({"planned_qty": True}, "planned_qty: Input should be a valid integer"),
    ({"planned_qty": 1000.0}, "planned_qty: Input should be a valid integer"),
    ({"planned_qty": 10**400}, "planned_qty: Input should be less than or equal to 1000000000"),
    ({"planned_qty": 0}, "planned_qty: Input should be greater than or equal to 1"),
]

BAD_PAYLOADS: list[tuple[bytes, str]] = [
    ('{"work_order": "WO-9"}'.encode("utf-16"), "payload is not UTF-8"),
    ('{"work_order": "WO-9"}'.encode("utf-16-le"), "payload is not JSON"),
    ('{"work_order": "WO-9"}'.encode("utf-32"), "payload is not UTF-8"),
    (b"\xff\xfe", "payload is not UTF-8"),
    (b'{"work_order": "A", "work_order": "B"}', "payload has the key 'work_order' twice"),
    (b'{"planned_qty": NaN}', "payload is not JSON: NaN is not a JSON number"),
    (b"not json", "payload is not JSON"),
]


async def test_free_text_and_numbers_follow_one_rule(
    tmp_path: Path, broker: Broker, sim: FillingLineSimulator
) -> None:
    config = write_config(tmp_path, broker, {}, extra=plc_section(tcp(sim)))
    async with running_agent(config) as agent:
        await wait_until(lambda: agent.commands is not None and agent.commands.connected)
        for body, error in BAD_FIELDS:
            reply = await command(broker, json.dumps(body).encode())
            assert reply == {"ok": False, "error": error}, body
        for payload, error in BAD_PAYLOADS:
            reply = await command(broker, payload)
            assert reply["ok"] is False, payload
            assert reply["error"].startswith(error), (payload, reply)
        assert agent.batch_lines.named(None).work_order.work_order is None  # nothing was applied
        good = {"work_order": "WO-ß/7", "lot": 'L-%&"()*+,./:;<=>?_z', "planned_qty": 10**9}
        assert (await command(broker, json.dumps(good).encode()))["ok"] is True
        assert agent.batch_lines.named(None).work_order.lot == good["lot"]


# --- retained commands ---------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_retained_command_is_refused_not_applied_at_every_start(
    tmp_path: Path, broker: Broker, sim: FillingLineSimulator, protocol: str
) -> None:
    # no scanners: `extra` continues the destination's section, then the PLC's
    config = write_config(
        tmp_path, broker, {}, extra=f'protocol = "{protocol}"\n' + plc_section(tcp(sim))
    )
    async with aiomqtt.Client(broker.host, broker.port) as mes:
        await mes.publish(CMD, b'{"work_order": "WO-OLD"}', qos=1, retain=True)
    async with subscriber(broker, f"{NODE}/cmd/#") as got:
        for _ in range(2):  # two starts: refused at each
            seen = len(replies(got))
            async with running_agent(config) as agent:
                await got.wait_for(lambda g, seen=seen: len(replies(g)) > seen)
                assert replies(got)[-1] == {"ok": False, "error": RETAINED}
                before = agent.batch_lines.named(None).work_order.work_order
                assert before in {None, "WO-NOW"}  # none yet, or the one set the time before
                if protocol == "5":  # the flag is kept on live messages too (retain-as-published)
                    reply = await command(broker, b'{"work_order": "WO-R"}', retain=True)
                    assert reply == {"ok": False, "error": RETAINED}
                    assert agent.batch_lines.named(None).work_order.work_order == before
                reply = await command(broker, b'{"work_order": "WO-NOW"}')
                assert reply == {"ok": True, "work_order": "WO-NOW"}
    results = [e["result"] for e in audit(tmp_path / "data" / "audit.log")]
    assert results.count(f"refused: {RETAINED}") == 2 + 2 * (protocol == "5")


async def test_a_retained_poison_message_no_longer_keeps_the_agent_down(
    tmp_path: Path, broker: Broker, sim: FillingLineSimulator
) -> None:
    """`lineside run` as a process: retained poison at start, then hostile text in log lines."""
    config = write_config(tmp_path, broker, {}, extra=plc_section(tcp(sim)))
    async with aiomqtt.Client(broker.host, broker.port) as mes:
        await mes.publish(CMD, b"[" * 60_000, qos=1, retain=True)
    agent = AgentProcess(config, tmp_path / "agent.log")
    async with subscriber(broker, f"{NODE}/cmd/#") as got:
        agent.start()
        try:
            await got.wait_for(lambda g: bool(replies(g)), timeout=30)
            assert replies(got) == [{"ok": False, "error": RETAINED}]
            assert agent.process is not None
            assert agent.process.poll() is None, agent.log()
            forged = {"work_order": "WO-1\n2026-12-06 00:00:00,000 INFO    agent.runtime: FORGED"}
            reply = await command(broker, json.dumps(forged).encode())
            assert reply == {
                "ok": False,
                "error": "work_order: control character 0x0a at position 4",
            }
            bidi = f"{NODE}/cmd/x\u202eredro-krow"
            reply = await command(broker, b"{}", topic=bidi)
            assert reply == {"ok": False, "error": "unknown command 'x\\u202eredro-krow'"}
            assert await command(broker, b'{"work_order": "WO-2"}') == {
                "ok": True,
                "work_order": "WO-2",
            }
            assert agent.process.poll() is None, agent.log()
        finally:
            if agent.process is not None:
                assert agent.terminate() == 0
    log = agent.log()
    assert not [line for line in log.splitlines() if line.startswith("2026-12-06 00:00:00,000")]
    assert "\u202e" not in log
    assert "x\\u202eredro-krow" in log


# --- the listener on its own: errors of its handler, rate limit, audit, reconnects ----------


def destination(broker: Broker) -> MqttDestinationConfig:
    return MqttDestinationConfig.model_validate(
        {"name": "plant-broker", "kind": "mqtt", "url": broker.url}
    )


async def test_commands_are_rate_limited_audited_and_summarised(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.runtime.commands")
    applied: list[WorkOrderCommand] = []

    async def on_work_order(command: WorkOrderCommand) -> None:
        applied.append(command)

    path = tmp_path / "audit.log"
    listener = CommandListener(
        destination(broker),
        TOPICS,
        client_id="lineside-test-cmd",
        on_work_order=on_work_order,
        audit=AuditLog(path),
        summary_interval_s=0.3,
    )
    task = asyncio.create_task(listener.run(), name="commands")
    try:
        await wait_until(lambda: listener.connected, what="listener connected")
        async with subscriber(broker, REPLY) as got:
            async with aiomqtt.Client(
                broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5
            ) as mes:
                for n in range(100):
                    body = json.dumps({"work_order": f"WO-{n}" + ("\x1b" if n == 0 else "")})
                    await mes.publish(CMD, body, qos=0, properties=client_id_property("mes-1"))
            await got.wait_for(lambda g: len(replies(g)) == 100)
        answers = replies(got)
        limited = [r for r in answers if r == {"ok": False, "error": RATE_LIMITED}]
        accepted = [r for r in answers if r["ok"]]
        assert limited, "100 commands at once: some beyond 10 a second"
        assert len(accepted) + len(limited) == 99  # and the one with ESC refused for its text
        assert len(applied) == len(accepted)

        def summarised() -> int:
            return sum(e["args"].get("refused", 0) for e in audit(path))

        await wait_until(lambda: summarised() == len(limited), what="rate-limit summary")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    entries = audit(path)
    one = [e for e in entries if e["args"].get("payload")]
    assert len(one) == len(accepted) + 1  # each handled command, not each refused one
    assert all(e["args"]["client_id"] == "mes-1" and e["args"]["topic"] == CMD for e in one)
    assert one[0]["args"]["payload"] == '{"work_order": "WO-0\\\\u001b"}'
    assert one[0]["result"] == "refused: work_order: control character 0x1b at position 4"
    assert len(entries) - len(one) < len(limited)  # summaries, not a line per refusal
    lines = [r.getMessage() for r in caplog.records if "rate limit" in r.getMessage()]
    assert 1 <= len(lines) < len(limited)


async def test_any_error_of_one_command_is_its_reply_and_the_broker_may_come_and_go(
    tmp_path: Path, broker: Broker
) -> None:
    calls: list[str | None] = []

    async def on_work_order(command: WorkOrderCommand) -> None:
        calls.append(command.work_order)
        if command.work_order == "WO-BUG":
            raise RuntimeError("a bug met on odd input")

    listener = CommandListener(
        destination(broker),
        TOPICS,
        client_id="lineside-test-cmd",
        on_work_order=on_work_order,
        audit=AuditLog(tmp_path / "audit.log"),
    )
    task = asyncio.create_task(listener.run(), name="commands")
    try:
        await wait_until(lambda: listener.connected, what="listener connected")
        assert await command(broker, b'{"work_order": "WO-BUG"}') == {
            "ok": False,
            "error": "internal error (RuntimeError)",
        }
        assert (await command(broker, b'{"work_order": "WO-1"}'))["ok"] is True
        broker.stop()
        await wait_until(lambda: not listener.connected, what="listener lost the broker")
        broker.start()
        await wait_until(lambda: listener.connected, what="listener back")
        assert (await command(broker, b'{"work_order": "WO-2"}'))["ok"] is True
        assert not task.done()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert calls == ["WO-BUG", "WO-1", "WO-2"]
