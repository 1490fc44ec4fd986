"""One MQTT connection as an `mqtt` destination describes it, and why a connection failed.

The sink (`sync.mqtt`), the agent's command listener and `lineside doctor` each open their
connection with `mqtt_client`: the broker's address, the credentials (password file read now),
the TLS context (files read now, so a rotated certificate is used at the next connect), the
protocol version (MQTT 5, or 3.1.1 with a clean session), keepalive and connect timeout. How
soon a lost link is tried again is `sync.retry`'s, for all of them. `describe_failure` says in
one line why a connection or publish failed, in an operator's words; `publish_checked` is one
QoS 1 publish that returns its PUBACK's reason code (for doctor; the sink keeps a window).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any

import aiomqtt
import paho.mqtt.client as paho
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

from sync.mqtt_paho import paho_of

if TYPE_CHECKING:
    import logging

    from sync.mqtt_config import MqttDestinationConfig

# CONNACK codes that mean "who you are is not accepted": 3.1.1 (4, 5) and MQTT 5 (0x86, 0x87,
# 0x8C bad authentication method).
_AUTH_REFUSED = {4, 5, 0x86, 0x87, 0x8C}
# CONNACK codes that mean "I do not speak this protocol version": 3.1.1 (1) and MQTT 5 (0x84).
_VERSION_REFUSED = {1, 0x84}
RETAIN_NOT_SUPPORTED = 0x9A


def connack_code(exc: BaseException) -> int | None:
    """The CONNACK return / reason code a refused connect carries, if it is one."""
    if isinstance(exc, MqttConnectError) and exc.rc is not None:
        return int(exc.rc.value) if isinstance(exc.rc, ReasonCode) else int(exc.rc)
    return None


V311_HINT = (
    'a broker that speaks only MQTT 3.1.1 does that (RabbitMQ before 3.13): set protocol = "3.1.1"'
)


class ClosedBeforeConnack(aiomqtt.MqttError):
    """The broker closed the connection before it answered the CONNECT (with `will_topic`)."""

    def __init__(self, reason: str, *, will_topic: str | None = None) -> None:
        super().__init__(reason)
        self.will_topic = will_topic


def mqtt_client(
    config: MqttDestinationConfig,
    *,
    client_id: str,
    will: aiomqtt.Will | None = None,
    logger: logging.Logger | None = None,
    inflight: int | None = None,
    timeout_s: float | None = None,
) -> aiomqtt.Client:
    """A not yet connected client for `config`'s broker (enter it to connect).

    `inflight` raises aiomqtt's limit on publishes in flight to it and removes paho's (0: no
    count, no scan of the messages in flight per PUBACK) when the caller keeps its own window
    (the sink's window bounds them). Raises `OSError` (`ssl.SSLError` included) when the
    password, CA, certificate or key file cannot be read.
    """
    password = config.password()
    context = config.ssl_context()
    v5 = config.protocol == "5"
    client = aiomqtt.Client(
        config.host,
        config.port,
        identifier=client_id,
        username=config.username,
        password=password.get_secret_value() if password is not None else None,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        clean_session=None if v5 else True,
        will=will,
        keepalive=config.keepalive,
        timeout=config.connect_timeout if timeout_s is None else timeout_s,
        tls_context=context,
        logger=logger,
        max_inflight_messages=None if inflight is None else 0,  # 0: paho keeps no count (ours does)
        max_concurrent_outgoing_calls=None if inflight is None else inflight + 1,
    )
    if inflight is not None:
        client.pending_calls_threshold = inflight + 1
    return client


def _refused_connect(exc: BaseException, protocol: str | None) -> str | None:
    """What a CONNACK refusal means, for the codes an operator can act on."""
    code = connack_code(exc)
    if code in _AUTH_REFUSED:
        return f"not authorized (broker refused the credentials: {exc})"
    if code in _VERSION_REFUSED:
        return (
            f"the broker does not speak MQTT {protocol or 'in this version'} ({exc}): "
            'set protocol = "3.1.1" on this destination'
        )
    if code == RETAIN_NOT_SUPPORTED:
        return (
            f"the broker has retained messages off ({exc}): the agent's state and its will "
            "are retained; turn them on (mosquitto: retain_available true)"
        )
    return None


def describe_failure(exc: BaseException, *, protocol: str | None = None) -> str:  # noqa: PLR0911 (one return per cause)
    """Say in one operator-readable line why a connection or publish failed.

    `protocol` is the MQTT version asked for, so that a broker that refuses it is named as such.
    """
    refused = _refused_connect(exc, protocol)
    if refused is not None:
        return refused
    text = str(exc)
    # aiomqtt re-raises OSError/SSLError from the connect as MqttError(str(exc)), so the
    # cause is recognised by its text.
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        detail = getattr(exc, "verify_message", None) or text
        if "hostname" in text.lower() or "IP address mismatch" in text:
            return f"TLS: certificate verify failed (host name mismatch?): {detail}"
        return f"TLS: certificate verify failed (wrong CA?): {detail}"
    if isinstance(exc, ssl.SSLError) or "[SSL" in text:
        return f"TLS: handshake failed (client certificate refused, or not a TLS port?): {text}"
    if isinstance(exc, ConnectionRefusedError) or "Connection refused" in text:
        return f"connection refused: {text}"
    if isinstance(exc, ClosedBeforeConnack) and protocol == "5":
        closed = "the broker closed the connection before answering the MQTT 5 CONNECT"
        return f"{text}: {closed}; {V311_HINT}"
    if isinstance(exc, ClosedBeforeConnack):
        will = f" to {exc.will_topic}" if exc.will_topic else ""
        return (
            f"{text}: the broker closed the connection before answering the CONNECT (its "
            f"retained will{will}: a topic it refuses, or retained messages off? lineside "
            "doctor tells)"
        )
    return text or type(exc).__name__


async def publish_checked(
    client: aiomqtt.Client, topic: str, payload: bytes, *, retain: bool, timeout_s: float
) -> ReasonCode:
    """Publish once with QoS 1 and return the PUBACK's reason code (aiomqtt's publish drops it).

    Raises `aiomqtt.MqttError` when the link is lost before the PUBACK (a broker that refuses
    a topic by closing the connection), `TimeoutError` when no PUBACK comes in `timeout_s`.
    """
    inner = paho_of(client)
    acked: asyncio.Future[ReasonCode] = asyncio.get_running_loop().create_future()
    mids: list[int] = []
    chained_publish, chained_disconnect = inner.on_publish, inner.on_disconnect

    def on_publish(*args: Any) -> None:  # paho v2: (client, userdata, mid, reason_code, props)
        if mids and args[2] == mids[0]:
            if not acked.done():
                acked.set_result(args[3])
        elif chained_publish is not None:
            chained_publish(*args)

    def on_disconnect(*args: Any) -> None:  # paho v2: (client, userdata, flags, reason_code, ...)
        if mids and not acked.done():
            acked.set_exception(aiomqtt.MqttError(f"connection lost ({args[3]})"))
        if chained_disconnect is not None:
            chained_disconnect(*args)

    inner.on_publish, inner.on_disconnect = on_publish, on_disconnect
    try:
        info = inner.publish(topic, payload, qos=1, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttError(f"publish failed: {paho.error_string(info.rc)}")
        mids.append(info.mid)
        async with asyncio.timeout(timeout_s):
            return await acked
    finally:
        inner.on_publish, inner.on_disconnect = chained_publish, chained_disconnect
