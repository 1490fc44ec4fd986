r"""Commands to the agent over MQTT: `{topic_prefix}/{site}/{node}/cmd/{name}` (`sync.topics`).

The agent subscribes on one broker: the MQTT destination with `commands = true`, else the first
MQTT destination (one only, so that a command bridged between brokers is applied once), with a
client of its own (`sync.mqtt_link`: the destination's address, TLS, credentials and protocol
version; `sync.retry`'s reconnect policy). Every message gets exactly one answer on
`.../cmd/{name}/reply`, `{"ok": true, ...}` or `{"ok": false, "error": "..."}`, one line in the
log and one entry in the audit log — and no message, whatever it holds, can stop the listener:

- more than `RATE_PER_S` commands a second are refused (`RATE_LIMITED`), with one log line
  when it starts and one summary line (log and audit) per `summary_interval_s` while it lasts;
- a retained message is refused (`RETAINED`) and not applied: a command is an instruction at a
  moment, not a state (MQTT 5 keeps the flag on live messages too: retain-as-published);
- the payload must be at most 64 KiB of UTF-8 JSON (no duplicate keys, no NaN), nested no
  deeper than the parser goes; its fields follow the text rule of `agent.text`;
- any other exception while handling one message is that message's error reply.

The audit entry is action `command`, client `mqtt`, args `topic`, `client_id` (an MQTT 5 user
property `client_id` where the broker or sender provides one, else null) and `payload` (at most
200 bytes as printable ASCII, `\xNN` for other bytes); the result is `ok` or `refused: ...`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import aiomqtt
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from agent.batches.work_orders import WorkOrderCommand
from agent.scanning.interpret import escaped
from agent.text import shown, validation_text
from sync.base import OutboxFull
from sync.mqtt_link import describe_failure, mqtt_client
from sync.mqtt_paho import raise_lost_cancellation
from sync.retry import reconnect_delay

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from agent.web.audit import AuditLog
    from sync.mqtt_config import MqttDestinationConfig
    from sync.topics import Topics

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 64 * 1024
RATE_PER_S = 10
CLIENT_ID_PROPERTY = "client_id"
RETAINED = "retained command refused: publish commands without the retain flag"
RATE_LIMITED = f"rate limit: more than {RATE_PER_S} commands a second; refused"
_NAME_SHOWN = 64  # characters of a command name (a topic level) in replies, logs and the audit


class CommandRefused(Exception):
    """A command is refused; the message is the reply's `error`."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise CommandRefused(f"payload has the key '{shown(key)[:64]}' twice")
        found[key] = value
    return found


def _no_constant(name: str) -> object:
    raise CommandRefused(f"payload is not JSON: {name} is not a JSON number")


def parse_payload(payload: bytes) -> object:
    """A command's JSON body, or `CommandRefused` saying why not (size checked first)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise CommandRefused(
            f"payload too large: {len(payload)} bytes (at most {MAX_PAYLOAD_BYTES})"
        )
    if not payload:
        raise CommandRefused("payload is empty")
    try:
        text = payload.decode("utf-8")  # json.loads(bytes) would take UTF-16 and UTF-32 too
    except UnicodeDecodeError as exc:
        byte = payload[exc.start]
        raise CommandRefused(
            f"payload is not UTF-8 (byte 0x{byte:02x} at position {exc.start})"
        ) from exc
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except RecursionError as exc:
        raise CommandRefused("payload is nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4,300 digits
        raise CommandRefused(f"payload is not JSON: {exc}") from exc


class _RateLimit:
    """A token bucket: `per_s` commands a second, in bursts of at most `per_s`."""

    def __init__(self, per_s: float) -> None:
        self._per_s = per_s
        self._tokens = per_s
        self._last = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._per_s, self._tokens + (now - self._last) * self._per_s)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class CommandListener:
    """Receives commands for this node and dispatches them to handlers."""

    def __init__(
        self,
        destination: MqttDestinationConfig,
        topics: Topics,
        *,
        client_id: str,
        on_work_order: Callable[[WorkOrderCommand], Awaitable[None]],
        audit: AuditLog,
        rate_per_s: float = RATE_PER_S,
        summary_interval_s: float = 60.0,
    ) -> None:
        self._dest = destination
        self._topics = topics
        self._client_id = client_id
        self._on_work_order = on_work_order
        self._audit = audit
        self._rate_per_s = rate_per_s
        self._limit = _RateLimit(rate_per_s)
        self._summary_interval_s = summary_interval_s
        self._flood: asyncio.TimerHandle | None = None  # the next summary, while refusing
        self._flood_refused = 0
        self._flood_since = 0.0
        self.connected = False
        self.handled = 0
        self.rejected = 0

    async def run(self) -> None:
        """Listen for ever, reconnecting with backoff."""
        attempt = 0
        try:
            while True:
                try:
                    async with self._client() as client:
                        await self._subscribe(client)
                        raise_lost_cancellation()
                        self.connected = True
                        attempt = 0
                        log.info(
                            "listening for commands on %s (destination %s)",
                            self._topics.commands,
                            self._dest.name,
                        )
                        async for message in client.messages:
                            await self._handle(client, message)
                            raise_lost_cancellation()  # (the reply's PUBACK wait, too)
                except aiomqtt.MqttError as exc:
                    cause = describe_failure(exc, protocol=self._dest.protocol)
                    if self.connected:
                        log.warning("command listener lost the broker: %s", cause)
                    elif attempt == 0:  # once per outage, not at every retry
                        log.warning("command listener cannot reach the broker: %s", cause)
                    else:
                        log.debug("command listener: %s", cause)
                    self.connected = False
                    await asyncio.sleep(reconnect_delay(attempt))
                    attempt += 1
        finally:
            self.connected = False
            self._summarise(final=True)

    def _client(self) -> aiomqtt.Client:
        try:
            return mqtt_client(self._dest, client_id=self._client_id)
        except (OSError, ValueError) as exc:
            raise aiomqtt.MqttError(f"cannot read credentials: {exc}") from exc

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        topic = self._topics.commands
        if self._dest.protocol == "5":  # keep the retain flag of live messages as published
            options = SubscribeOptions(qos=1, retainAsPublished=True)
            await client.subscribe(topic, options=options)
        else:  # MQTT 3.1.1 flags only what is delivered because of the subscription
            await client.subscribe(topic, qos=1)

    async def _handle(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        topic = str(message.topic)
        name = self._topics.command_name(topic)
        reply_topic = self._topics.reply(name)
        shown_name = shown(name)[:_NAME_SHOWN]
        if not self._limit.take():
            self._refused_by_rate_limit()
            # QoS 0: a flood is answered as fast as it comes, never queued behind PUBACKs
            await client.publish(reply_topic, json.dumps(_refusal(RATE_LIMITED)).encode())
            return
        raw = message.payload
        payload = bytes(raw) if isinstance(raw, bytes | bytearray) else str(raw or "").encode()
        try:
            reply = await self._dispatch(name, payload, retained=bool(message.retain))
        except Exception as exc:  # one message must never end the listener, whatever it holds
            log.error("command %s failed unexpectedly: %s", shown_name, type(exc).__name__)  # noqa: TRY400 (the traceback may quote the payload: DEBUG)
            log.debug("command failure", exc_info=True)
            reply = _refusal(f"internal error ({type(exc).__name__})")
        if reply["ok"]:
            self.handled += 1
            log.info("command %s accepted", shown_name)
        else:
            self.rejected += 1
            log.warning("command %s refused: %s", shown_name, reply["error"])
        self._audit.record(
            "command",
            {
                "topic": shown(topic)[: len(self._topics.commands) + _NAME_SHOWN],
                "client_id": _client_id(message),
                "payload": escaped(payload),
            },
            "mqtt",
            "ok" if reply["ok"] else f"refused: {reply['error']}",
        )
        await client.publish(reply_topic, json.dumps(reply).encode(), qos=1)

    async def _dispatch(self, name: str, payload: bytes, *, retained: bool) -> dict[str, Any]:
        """Apply one command; its reply (refusals included)."""
        try:
            if retained:
                raise CommandRefused(RETAINED)  # noqa: TRY301 (one refusal path for all)
            body = parse_payload(payload)
            match name:
                case "work-order":
                    command = WorkOrderCommand.model_validate(body)
                    await self._on_work_order(command)
                    return {"ok": True, "work_order": command.work_order}
                case _:
                    raise CommandRefused(f"unknown command '{shown(name)[:_NAME_SHOWN]}'")  # noqa: TRY301
        except CommandRefused as exc:
            return _refusal(str(exc))
        except ValidationError as exc:
            return _refusal(validation_text(exc))
        except ValueError as exc:  # the handler's refusal (e.g. no PLC with batch signals)
            return _refusal(shown(str(exc)))
        except OutboxFull as exc:  # the work order could not be recorded: say so, keep going
            return _refusal(f"not recorded: {exc}")

    def _refused_by_rate_limit(self) -> None:
        """Count a refusal: a flood is logged as it starts, then summed up once per interval."""
        self._flood_refused += 1
        if self._flood is not None:
            return
        log.warning(
            "commands arrive faster than %g a second: the rate limit refuses the excess "
            "(one summary every %g s while it lasts)",
            self._rate_per_s,
            self._summary_interval_s,
        )
        self._flood_since = time.monotonic()
        self._flood = asyncio.get_running_loop().call_later(
            self._summary_interval_s, self._summarise
        )

    def _summarise(self, *, final: bool = False) -> None:
        """Log and audit the refusals of the last interval; an interval without any ends it."""
        if self._flood is not None:
            self._flood.cancel()
            self._flood = None
        if not self._flood_refused:
            return
        refused, self._flood_refused = self._flood_refused, 0
        now = time.monotonic()
        seconds, self._flood_since = now - self._flood_since, now
        log.warning("rate limit: %d command(s) refused in the last %.0f s", refused, seconds)
        self._audit.record(
            "command",
            {"topic": self._topics.commands, "refused": refused, "seconds": round(seconds, 1)},
            "mqtt",
            f"refused: {RATE_LIMITED}",
        )
        if not final:  # still refusing, maybe: look again after the next interval
            self._flood = asyncio.get_running_loop().call_later(
                self._summary_interval_s, self._summarise
            )


def _refusal(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error}


def _client_id(message: aiomqtt.Message) -> str | None:
    """The sender's client id from an MQTT 5 user property, where there is one."""
    for key, value in getattr(message.properties, "UserProperty", None) or []:
        if key == CLIENT_ID_PROPERTY:
            return shown(str(value))[:128]
    return None
