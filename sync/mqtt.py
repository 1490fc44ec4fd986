"""The MQTT sink: events as QoS 1 publishes over a sliding window, agent state retained.

`MqttSink` owns one broker connection (aiomqtt over paho, opened by `sync.mqtt_link`). On
connect it publishes the agent's online state retained on the state topic, with the offline
state as the MQTT will; on a clean exit it publishes the offline state before disconnecting.
Each `send` publishes a batch of envelopes, each to its event type's topic (`sync.topics`; QoS
1, not retained, payload as is, MQTT 5 user property ``id``), and returns when every one of
them has its own PUBACK. The configured window (publishes in flight) is cut into batches of up
to `BATCH` so that several batches overlap: a batch costs one task and one wake-up instead of
one per event, and the broker still sees a sliding window of single publishes. A broker that
closes the link on a publish instead of refusing it is recognised (`sync.mqtt_cutoff`). A
`RetainedState` shared by an agent's MQTT sinks (`sync.mqtt_state`) lets the runtime replace
the online document while connected (its health, every 30 s and on change).

aiomqtt's `publish` drops the PUBACK reason code, so events are published through paho
directly and matched to their PUBACK by message id in paho's v2 `on_publish` callback, which
carries the reason code; codes >= 0x80 become `SinkRejected`. Everything else that goes wrong
(`MqttError`, `ssl.SSLError`, `OSError`, a missing PUBACK) is `SinkUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from typing import TYPE_CHECKING, Any, Self

import aiomqtt
import paho.mqtt.client as paho

from sync.base import SinkRejected, SinkUnavailable
from sync.faults import fault_point
from sync.mqtt_config import MqttDestinationConfig
from sync.mqtt_cutoff import CUT_OFF_WITHIN_S, CutOffWatch
from sync.mqtt_link import ClosedBeforeConnack, describe_failure, mqtt_client
from sync.mqtt_paho import EventProperties, PahoLog, abandon, paho_of, raise_lost_cancellation

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from sync.base import Envelope
    from sync.mqtt_state import RetainedState
    from sync.topics import Topics

__all__ = ["MqttDestinationConfig", "MqttSink", "describe_failure"]

log = logging.getLogger(__name__)

# Envelopes per `send`: small against the window, so a batch's last PUBACK never holds up many
# others; large enough to take the per-send costs (task, wake-up, bookkeeping) off each event.
BATCH = 16


class _BatchWait:
    """The PUBACKs one `send` still waits for, and the events the broker refused."""

    __slots__ = ("done", "refused", "remaining")

    def __init__(self, done: asyncio.Future[None], remaining: int) -> None:
        self.done = done
        self.remaining = remaining
        self.refused: list[tuple[Envelope, str]] = []


class MqttSink:
    """One MQTT broker as a destination (implements `sync.base.Sink`).

    `topics` are the node's topics on this broker (`sync.topics`); `online_payload` /
    `offline_payload` are the agent state documents published retained on its state topic.
    `cut_offs` outlives the sink (one per destination, handed to each new connection's sink):
    it tells a broker that refuses an event by closing the connection (`sync.mqtt_cutoff`).
    """

    def __init__(
        self,
        config: MqttDestinationConfig,
        *,
        topics: Topics,
        client_id: str,
        online_payload: bytes,
        offline_payload: bytes,
        cut_offs: CutOffWatch | None = None,
        state: RetainedState | None = None,
    ) -> None:
        self._config = config
        self._board = state
        self._topics = topics
        self._event_topics: dict[str, str] = {}  # route -> topic
        self._client_id = client_id
        self._online = online_payload
        self._offline = offline_payload
        self._state_topic = topics.state
        self._cut_offs = cut_offs if cut_offs is not None else CutOffWatch(config.name)
        self._first_event: tuple[Envelope, float] | None = None  # first published, and when
        self._acknowledged = False  # an event's PUBACK arrived on this connection
        self._client: aiomqtt.Client | None = None
        self._paho_log = PahoLog(log.getChild("paho"))
        # mid -> (its send's wait, its envelope, PUBACK deadline on the loop's clock), oldest first
        self._pending: dict[int, tuple[_BatchWait, Envelope, float]] = {}
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._lost: str | None = None
        self._link_down: asyncio.Future[str] | None = None  # resolved with the cause
        self._connack_read = False  # this connection's CONNACK came (refused or not)

    @property
    def max_batch(self) -> int:
        """Envelopes per `send` (each its own publish): `BATCH`, or the window if smaller."""
        return min(BATCH, self._config.window)

    @property
    def window(self) -> int:
        """`send` calls in flight: together about the configured window of QoS 1 publishes."""
        return math.ceil(self._config.window / self.max_batch)

    @property
    def connected(self) -> bool:
        """Whether the sink holds a live connection."""
        return self._client is not None and self._lost is None

    async def link_lost(self) -> str:
        """Return with the cause as soon as the broker connection is lost (`LinkWatcher`)."""
        if self._link_down is None:
            raise SinkUnavailable(f"{self._config.name}: not connected")
        return await asyncio.shield(self._link_down)

    def __repr__(self) -> str:
        return f"MqttSink({self._config.name!r}, {self._config.url!r})"

    async def __aenter__(self) -> Self:
        """Connect, publish the online state; `SinkUnavailable` when that fails."""
        config = self._config
        try:
            client = mqtt_client(
                config,
                client_id=self._client_id,
                will=aiomqtt.Will(self._state_topic, self._offline, qos=1, retain=True),
                logger=self._paho_log,
                # The window is enforced by the caller; this keeps aiomqtt/paho from
                # throttling below it (batches may round it up) or warning about it.
                inflight=self.window * self.max_batch,
            )
        except (OSError, ssl.SSLError) as exc:
            raise SinkUnavailable(f"{config.name}: cannot load credentials: {exc}") from exc
        self._lost = self._paho_log.last_error = None
        self._link_down = asyncio.get_running_loop().create_future()
        self._hook(client)
        log.debug("%r: connecting as %s", self, self._client_id)
        try:
            await self._connect(client)
        except (aiomqtt.MqttError, OSError) as exc:
            abandon(client)
            cause = describe_failure(exc, protocol=config.protocol)
            if cause == "Operation timed out":  # aiomqtt's words for a missing CONNACK
                cause = f"no CONNACK within {config.connect_timeout:g} s"
                if config.protocol == "5":
                    cause += " (a broker that speaks only MQTT 3.1.1 may not answer MQTT 5)"
            raise SinkUnavailable(f"{config.name}: {cause}") from exc
        except BaseException:
            abandon(client)
            raise
        self._client = client
        try:
            await self._publish_state(self._board.payload if self._board else self._online)
            raise_lost_cancellation()  # a stopping publisher must not start publishing
        except BaseException:
            await self._disconnect()
            raise
        if self._board is not None:
            self._board.sinks.add(self)
        log.info("%r: connected", self)
        return self

    async def publish_state(self, payload: bytes) -> None:
        """Publish a new online state document (retained); `SinkUnavailable` when it fails."""
        if self._client is None or self._lost is not None:
            raise SinkUnavailable(f"{self._config.name}: not connected")
        await self._publish_state(payload)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Publish the offline state (if the link is up) and disconnect."""
        if self._board is not None:
            self._board.sinks.discard(self)
        if self._client is None:
            return
        if self._lost is None:
            try:
                await self._publish_state(self._offline)
            except SinkUnavailable as failure:
                log.warning("%r: offline state not published: %s", self, failure)
        await self._disconnect()
        log.info("%r: disconnected", self)

    async def send(self, batch: Sequence[Envelope]) -> None:
        """Publish each envelope (QoS 1) and return when all are PUBACKed.

        `SinkRejected` names the envelopes the broker (or paho) refused; the others were
        delivered. `SinkUnavailable` when the link failed before every PUBACK arrived.
        """
        if not batch:
            return
        loop = asyncio.get_running_loop()
        wait = _BatchWait(loop.create_future(), len(batch))
        mids: list[int] = []
        try:
            for envelope in batch:
                mid = self._publish_event(envelope, wait)
                if mid is not None:
                    mids.append(mid)
            if wait.remaining > 0:
                await wait.done
        finally:
            for mid in mids:
                self._pending.pop(mid, None)
        if wait.refused:
            wait.refused.sort(key=lambda refused: refused[0].seq)
            for envelope, reason in wait.refused:
                log.warning("%r: event %s refused: %s", self, envelope.id, reason)
            reasons = "; ".join(sorted({reason for _, reason in wait.refused}))
            raise SinkRejected(
                f"{self._config.name}: {reasons}", ids=[e.id for e, _ in wait.refused]
            )

    # -- internals ------------------------------------------------------------------------

    def _hook(self, client: aiomqtt.Client) -> None:
        """Chain our PUBACK/disconnect handlers in front of aiomqtt's own paho callbacks."""
        inner = paho_of(client)  # aiomqtt hides the PUBACK reason code
        inner.connect_timeout = self._config.connect_timeout
        aiomqtt_on_publish = inner.on_publish
        aiomqtt_on_disconnect = inner.on_disconnect
        aiomqtt_on_connect = inner.on_connect
        self._connack_read = False

        def on_connect(*args: Any) -> None:
            self._connack_read = True
            if aiomqtt_on_connect is not None:
                aiomqtt_on_connect(*args)

        def on_publish(*args: Any) -> None:
            # paho v2 signature: (client, userdata, mid, reason_code, properties)
            mid, reason_code = args[2], args[3]
            fault_point("mqtt.before_puback")
            entry = self._pending.pop(mid, None)
            if entry is not None:
                wait, envelope, _ = entry
                self._acknowledged = True
                if reason_code.is_failure:
                    refusal = (
                        f"broker refused the publish to {self._event_topic(envelope.route)}: "
                        f"{reason_code.getName()} (0x{reason_code.value:02X})"
                    )
                    wait.refused.append((envelope, refusal))
                self._settle(wait)
            elif aiomqtt_on_publish is not None:  # not an event: aiomqtt's own (state) publish
                aiomqtt_on_publish(*args)

        def on_disconnect(*args: Any) -> None:
            # paho v2 signature: (client, userdata, flags, reason_code, properties)
            cause = self._paho_log.last_error or f"connection lost ({args[3]})"
            self._connection_lost(self._closed_by_broker(cause))
            if aiomqtt_on_disconnect is not None:
                aiomqtt_on_disconnect(*args)

        inner.on_connect = on_connect
        inner.on_publish = on_publish
        inner.on_disconnect = on_disconnect

    async def _connect(self, client: aiomqtt.Client) -> None:
        """Enter `client`, failing as soon as the link drops instead of at the timeout.

        A TLS 1.3 broker refuses a client certificate only after the handshake, while the
        client waits for its CONNACK; aiomqtt ignores a disconnect before the CONNACK and
        would wait for its timeout. A broker that refuses the CONNECT answers and closes at
        once, and aiomqtt connects in an executor thread while the loop already reads: on a
        loaded machine the refusal and the close are both read before aiomqtt's task resumes.
        Once a CONNACK was read, aiomqtt's task is left to end with it (a refused password is
        named as such, not as a dropped connection).
        """
        link_down = self._link_down
        assert link_down is not None
        connecting = asyncio.ensure_future(client.__aenter__())
        try:
            either: list[asyncio.Future[Any]] = [connecting, link_down]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not connecting.done() and self._connack_read:
                await asyncio.wait([connecting], timeout=self._config.connect_timeout)
        finally:
            if not connecting.done():
                connecting.cancel()
                await asyncio.wait([connecting])
        if not connecting.cancelled():
            connecting.result()  # raises the connect error, if any
            return
        raise ClosedBeforeConnack(link_down.result(), will_topic=self._state_topic)

    def _event_topic(self, route: str) -> str:
        topic = self._event_topics.get(route)
        if topic is None:
            topic = self._event_topics[route] = self._topics.event(route)
        return topic

    def _closed_by_broker(self, reason: str) -> str:
        """Why the broker closed the link: `reason`, or the event it closes it on (cut-offs)."""
        first = self._first_event
        if self._client is None or self._lost is not None:
            return reason  # not connected yet (a refused connect), or already counted
        if first is None or self._acknowledged:
            self._cut_offs.clear()
            return reason
        envelope, published = first
        if time.monotonic() - published > CUT_OFF_WITHIN_S:  # (paho may call this off the loop)
            self._cut_offs.clear()
            return reason
        return self._cut_offs.cut_off(envelope.id, self._event_topic(envelope.route), reason)

    def _connection_lost(self, reason: str) -> None:
        """Fail every publish still waiting for its PUBACK: it will not come on this link."""
        if self._lost is None:
            self._lost = reason
            log.debug("%r: %s", self, reason)
        if self._link_down is not None and not self._link_down.done():
            self._link_down.set_result(reason)
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        pending, self._pending = self._pending, {}
        for wait, _, _ in pending.values():
            if not wait.done.done():
                wait.done.set_exception(SinkUnavailable(f"{self._config.name}: {reason}"))

    def _arm_deadline(self) -> None:
        """One timer for the oldest publish's PUBACK deadline (not one per publish)."""
        self._deadline_timer = None
        for _, _, deadline in self._pending.values():
            loop = asyncio.get_running_loop()
            self._deadline_timer = loop.call_at(deadline, self._check_deadline)
            return

    def _check_deadline(self) -> None:
        self._deadline_timer = None
        now = asyncio.get_running_loop().time()
        for _, _, deadline in self._pending.values():
            if deadline <= now:
                # The link counts as down: the caller reconnects and sends again, same ids.
                self._cut_offs.clear()  # a silent broker, not one that closes on a publish
                self._connection_lost(f"no PUBACK within {self._config.publish_timeout:g} s")
            else:
                self._arm_deadline()
            return

    @staticmethod
    def _settle(wait: _BatchWait) -> None:
        wait.remaining -= 1
        if wait.remaining <= 0 and not wait.done.done():
            wait.done.set_result(None)

    def _publish_event(self, envelope: Envelope, wait: _BatchWait) -> int | None:
        """Hand one envelope to paho; its PUBACK settles `wait`. The mid, or None if refused."""
        client = self._client
        if client is None:
            raise SinkUnavailable(f"{self._config.name}: not connected")
        if self._lost is not None:
            raise SinkUnavailable(f"{self._config.name}: {self._lost}")
        properties = EventProperties(envelope.id) if self._config.protocol == "5" else None
        topic = self._event_topic(envelope.route)
        try:
            info = paho_of(client).publish(  # see the module docstring
                topic, envelope.payload, qos=1, retain=False, properties=properties
            )
        except ValueError as exc:  # an invalid topic or an oversized payload
            wait.refused.append((envelope, f"cannot publish to {topic!r}: {exc}"))
            self._settle(wait)
            return None
        if info.rc != paho.MQTT_ERR_SUCCESS:
            reason = paho.error_string(info.rc)
            raise SinkUnavailable(f"{self._config.name}: publish failed: {reason}")
        if info.is_published():  # cannot happen for QoS 1, but paho allows it
            self._settle(wait)
            return None
        if self._first_event is None:
            self._first_event = (envelope, time.monotonic())
        deadline = asyncio.get_running_loop().time() + self._config.publish_timeout
        self._pending[info.mid] = (wait, envelope, deadline)
        if self._deadline_timer is None:
            self._arm_deadline()
        return info.mid

    async def _publish_state(self, payload: bytes) -> None:
        assert self._client is not None
        try:
            await self._client.publish(
                self._state_topic,
                payload,
                qos=1,
                retain=True,
                timeout=self._config.publish_timeout,
            )
        except (aiomqtt.MqttError, OSError) as exc:
            raise SinkUnavailable(
                f"{self._config.name}: retained state publish to {self._state_topic} failed "
                f"(a topic it refuses, or retained messages off?): {describe_failure(exc)}"
            ) from exc

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        self._connection_lost("disconnected")
        if client is None:
            return
        try:
            await client.__aexit__(None, None, None)
        except (aiomqtt.MqttError, OSError) as exc:
            log.debug("%r: disconnect: %s", self, describe_failure(exc))
        finally:
            abandon(client)
