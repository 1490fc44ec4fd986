"""What `lineside doctor` asks an MQTT broker, and what it says the broker did.

With a client id of its own (the running agent's session and retained state are left alone) and
the destination's address, TLS, credentials and protocol version, doctor:

1. connects with a retained will, as the agent does (on ``{base}/doctor``, empty);
2. subscribes to a test topic of the configured shape, the event topic of type
   ``doctor.check`` (``.../doctor.check`` dotted, ``.../doctor/check`` slashed), and publishes
   a test message there, QoS 1, not retained (consumers of ``#`` see it: ``{"doctor": ...}``);
3. waits for its PUBACK and for the message to come back, and says on which topic it came;
4. publishes an empty retained message on ``{base}/doctor`` (which removes itself).

What goes wrong is named: a broker that does not speak MQTT 5 (doctor then tries 3.1.1 to be
sure), retained messages off (the connect with a retained will is refused, or the broker closes
the link on it), a topic the broker refuses by closing the connection (NATS and a dotted topic
style), a refused publish (MQTT 5 reason code: an ACL), a broker that hands the test message back
on another topic (RabbitMQ takes '.' for a level separator).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
from typing import TYPE_CHECKING, NoReturn

import aiomqtt

from agent.cli.findings import CHECK_TIMEOUT_S, Finding, Status
from sync.mqtt_link import (
    RETAIN_NOT_SUPPORTED,
    connack_code,
    describe_failure,
    mqtt_client,
    publish_checked,
)
from sync.mqtt_paho import abandon

if TYPE_CHECKING:
    from sync.mqtt_config import MqttDestinationConfig
    from sync.topics import Topics

TEST_TYPE = "doctor.check"
ECHO_WAIT_S = 3.0
_V311 = 'set protocol = "3.1.1" on this destination'
_DOT = (
    'a "." inside a topic level is refused by some brokers (NATS): keep it out of '
    "topic_prefix, agent.site and agent.node"
)
_RETAIN = (
    "turn retained messages on (mosquitto: retain_available true): the agent's state and its "
    "will are retained"
)


class _Failed(Exception):
    """A step found a problem: the finding says which."""

    def __init__(self, detail: str, hint: str) -> None:
        super().__init__(detail)
        self.detail, self.hint = detail, hint


async def check_mqtt(dest: MqttDestinationConfig, topics: Topics) -> Finding:
    """Connect, publish a test message on the configured topic shape, and a retained one."""
    name = f"destination {dest.name}"
    try:
        client = _client(dest, topics, will=True)
        try:
            await client.__aenter__()
        except (aiomqtt.MqttError, OSError, ssl.SSLError) as exc:
            abandon(client)
            await _diagnose_connect(dest, topics, exc)
        try:
            detail = await _probe(dest, topics, client)
        finally:
            with contextlib.suppress(aiomqtt.MqttError, OSError):
                await client.__aexit__(None, None, None)
            abandon(client)
    except _Failed as failed:
        return Finding(name, Status.FAIL, f"{dest.url}: {failed.detail}", failed.hint)
    status = Status.WARN if "came back on" in detail else Status.OK
    hint = (
        "consumers must subscribe to the topics as the broker delivers them; say so with "
        'topic_style = "slashed"'
        if status is Status.WARN
        else ""
    )
    return Finding(name, status, f"{dest.url}: {detail}", hint)


def _client(
    dest: MqttDestinationConfig, topics: Topics, *, will: bool, protocol: str | None = None
) -> aiomqtt.Client:
    config = dest if protocol is None else dest.model_copy(update={"protocol": protocol})
    return mqtt_client(
        config,
        client_id=f"lineside-doctor-{os.getpid()}",
        will=aiomqtt.Will(f"{topics.base}/doctor", b"", qos=1, retain=True) if will else None,
        timeout_s=min(dest.connect_timeout, CHECK_TIMEOUT_S),
    )


async def _connects(dest: MqttDestinationConfig, topics: Topics, protocol: str) -> bool:
    """Whether a plain connect (no will) in `protocol` is accepted."""
    try:
        async with _client(dest, topics, will=False, protocol=protocol):
            return True
    except (aiomqtt.MqttError, OSError, ssl.SSLError):
        return False


async def _diagnose_connect(
    dest: MqttDestinationConfig, topics: Topics, exc: Exception
) -> NoReturn:
    """Say why the connect failed, trying without MQTT 5 or the will where that can tell."""
    cause = describe_failure(exc, protocol=dest.protocol)
    code = connack_code(exc)
    if code == RETAIN_NOT_SUPPORTED:
        raise _Failed(cause, _RETAIN) from exc
    told = code is not None or cause.startswith(("TLS", "connection refused", "not authorized"))
    if not told and dest.protocol == "5" and await _connects(dest, topics, "3.1.1"):
        raise _Failed(
            f"the broker does not speak MQTT 5 (it accepted MQTT 3.1.1): {cause}", _V311
        ) from exc
    if not told and await _connects(dest, topics, dest.protocol):
        will = f"{topics.base}/doctor"
        hint = _RETAIN
        if "." in will:  # the prefix, site or node: every topic of the node has the dot
            hint = f"{_DOT}; or {_RETAIN}"
        raise _Failed(
            f"the broker refuses a connect with a retained will to {will}: a topic it refuses, "
            f"or retained messages off? ({cause})",
            hint,
        ) from exc
    hint = "check url, firewall and that the broker runs"
    if "not authorized" in cause:
        hint = "check username and password_file (and the broker's ACL)"
    elif "TLS" in cause:
        hint = "check ca_file, cert_file/key_file and the broker's host name"
    elif "MQTT 5" in cause:
        hint = _V311
    raise _Failed(cause, hint) from exc


async def _probe(dest: MqttDestinationConfig, topics: Topics, client: aiomqtt.Client) -> str:
    """The test publishes; what the broker did, in words (or `_Failed`)."""
    topic = topics.event(TEST_TYPE)
    timeout = min(dest.publish_timeout, CHECK_TIMEOUT_S)
    refused_topic = (
        'a "." inside a topic level is refused by some brokers (NATS): set topic_style = "slashed"'
        if dest.topic_style == "dotted" and "." in topic
        else "check the broker's log and its ACL for this topic"
    )
    payload = json.dumps({"doctor": "lineside", "pid": os.getpid()}).encode()
    try:
        await client.subscribe(topic, qos=1, timeout=timeout)
        code = await publish_checked(client, topic, payload, retain=False, timeout_s=timeout)
    except aiomqtt.MqttError as exc:
        raise _Failed(
            f"the broker closed the connection on a test message to {topic}: a topic it "
            f"refuses? ({describe_failure(exc)})",
            refused_topic,
        ) from exc
    except TimeoutError as exc:
        raise _Failed(
            f"no PUBACK for a test message to {topic} within {timeout:g} s", refused_topic
        ) from exc
    if code.is_failure:
        raise _Failed(
            f"the broker refused a test message to {topic}: {code.getName()} "
            f"(0x{int(code.value):02X})",
            "check the broker's ACL: the agent publishes below {topic_prefix}/{site}/{node}/",
        )
    came_back = await _echo(client, payload)
    retained = await _retained(dest, topics, client)
    if came_back is None:
        echo = "not received back (a subscribe the ACL denies?)"
    elif came_back == topic:
        echo = "received back"
    else:
        echo = f"came back on {came_back}: the broker rewrites the topic"
    return f"MQTT {dest.protocol}; test message to {topic} acknowledged, {echo}; {retained}"


async def _echo(client: aiomqtt.Client, payload: bytes) -> str | None:
    """The topic the test message came back on, if it did within `ECHO_WAIT_S`."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(ECHO_WAIT_S):
            async for message in client.messages:
                if message.payload == payload:
                    return str(message.topic)
    return None


async def _retained(dest: MqttDestinationConfig, topics: Topics, client: aiomqtt.Client) -> str:
    """Publish an empty retained message (it removes itself); `_Failed` if the broker balks."""
    topic = f"{topics.base}/doctor"
    timeout = min(dest.publish_timeout, CHECK_TIMEOUT_S)
    try:
        code = await publish_checked(client, topic, b"", retain=True, timeout_s=timeout)
    except (aiomqtt.MqttError, TimeoutError) as exc:
        raise _Failed(
            f"the broker closed the connection on a retained message: retained messages off? "
            f"({describe_failure(exc)})",
            _RETAIN,
        ) from exc
    if int(code.value) == RETAIN_NOT_SUPPORTED:
        raise _Failed(f"the broker refuses retained messages: {code.getName()}", _RETAIN)
    if code.is_failure:
        raise _Failed(
            f"the broker refused a retained message to {topic}: {code.getName()}",
            "check the broker's ACL for the agent's state topic",
        )
    return "retained messages work"
