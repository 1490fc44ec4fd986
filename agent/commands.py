"""Commands to the agent over MQTT: `{topic_prefix}/{site}/{node}/cmd/{name}`.

The agent subscribes on its first MQTT destination's broker with its own client. Each command
payload is validated; the answer goes to `.../cmd/{name}/reply` as `{"ok": true}` or
`{"ok": false, "error": "..."}`, and an invalid command is logged — never a crash. The connection
is re-established with full-jitter backoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

import aiomqtt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.config import GtinText  # noqa: TC001 (pydantic resolves it at runtime)
from agent.supervisor import backoff
from sync.base import OutboxFull
from sync.mqtt_paho import raise_lost_cancellation

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sync.mqtt_config import MqttDestinationConfig

log = logging.getLogger(__name__)


class WorkOrderCommand(BaseModel):
    """`cmd/work-order`: what the line makes next. All fields null clears the work order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    work_order: str | None = Field(
        default=None, min_length=1, max_length=64, description="The MES work order id."
    )
    gtin: GtinText | None = Field(default=None, description="Product GTIN-14.")
    lot: str | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        pattern=r"^[!-~]+$",
        description="Lot of the batches of this work order (default: from lot_template).",
    )
    planned_qty: int | None = Field(default=None, gt=0, description="Planned quantity.")


def _error_text(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}" for e in exc.errors()
    )


class CommandListener:
    """Receives commands for this node and dispatches them to handlers."""

    def __init__(
        self,
        destination: MqttDestinationConfig,
        topic_base: str,
        *,
        client_id: str,
        on_work_order: Callable[[WorkOrderCommand], Awaitable[None]],
    ) -> None:
        self._dest = destination
        self._base = topic_base
        self._client_id = client_id
        self._on_work_order = on_work_order
        self.connected = False
        self.handled = 0
        self.rejected = 0

    async def run(self) -> None:
        """Listen for ever, reconnecting with backoff."""
        attempt = 0
        while True:
            try:
                async with self._client() as client:
                    await client.subscribe(f"{self._base}/cmd/+", qos=1)
                    raise_lost_cancellation()
                    self.connected = True
                    attempt = 0
                    log.info("listening for commands on %s/cmd/+", self._base)
                    async for message in client.messages:
                        await self._handle(client, message)
                        raise_lost_cancellation()  # (the reply's PUBACK wait, too)
            except aiomqtt.MqttError as exc:
                if self.connected:
                    log.warning("command listener lost the broker: %s", exc)
                self.connected = False
                await asyncio.sleep(backoff(attempt, cap=30))
                attempt += 1

    def _client(self) -> aiomqtt.Client:
        dest = self._dest
        try:
            password = dest.password()
            tls = dest.ssl_context()
        except (OSError, ValueError) as exc:
            raise aiomqtt.MqttError(f"cannot read credentials: {exc}") from exc
        return aiomqtt.Client(
            dest.host,
            dest.port,
            identifier=self._client_id,
            username=dest.username,
            password=password.get_secret_value() if password else None,
            tls_context=tls,
            keepalive=dest.keepalive,
            timeout=dest.connect_timeout,
        )

    async def _handle(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        name = str(message.topic).rsplit("/", 1)[-1]
        reply_topic = f"{self._base}/cmd/{name}/reply"
        reply: dict[str, Any]
        try:
            payload = message.payload
            text = payload if isinstance(payload, (bytes, bytearray)) else str(payload).encode()
            body = json.loads(text or b"null")
            match name:
                case "work-order":
                    command = WorkOrderCommand.model_validate(body)
                    await self._on_work_order(command)
                    reply = {"ok": True, "work_order": command.work_order}
                case _:
                    reply = {"ok": False, "error": f"unknown command {name!r}"}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            reply = {"ok": False, "error": f"payload is not JSON: {exc}"}
        except ValidationError as exc:
            reply = {"ok": False, "error": _error_text(exc)}
        except ValueError as exc:
            reply = {"ok": False, "error": str(exc)}
        except OutboxFull as exc:  # the work order could not be recorded: say so, keep going
            reply = {"ok": False, "error": f"not recorded: {exc}"}
        if reply["ok"]:
            self.handled += 1
            log.info("command %s accepted", name)
        else:
            self.rejected += 1
            log.warning("command %s rejected: %s", name, reply["error"])
        await client.publish(reply_topic, json.dumps(reply).encode(), qos=1)
