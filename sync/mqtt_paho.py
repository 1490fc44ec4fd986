"""Adapters around paho and aiomqtt: cheap on the sink's hot path, honest about failures.

The only place that touches their private parts (`tests/test_mqtt_paho.py` pins the versions
they were checked against): `paho_of` is the paho client inside an aiomqtt client (aiomqtt's
`publish` drops the PUBACK reason code, so events go through paho with our own callbacks);
`abandon` closes what a failed connect left open. `EventProperties` is an event's MQTT 5
PUBLISH properties (user property ``id``) packed once; `PahoLog` is the logger paho writes to,
keeping its last error for the sink's "why did the link drop" (paho reports socket and TLS
errors only in its log); `raise_lost_cancellation` re-raises a cancellation aiomqtt's
`asyncio.wait_for` swallowed.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

if TYPE_CHECKING:
    import aiomqtt
    import paho.mqtt.client as paho

CHECKED_WITH = {"aiomqtt": "2.5", "paho-mqtt": "2.2"}
"""The minor versions whose private attributes `paho_of` and `abandon` were checked against."""

_USER_PROPERTY = 0x26  # MQTT 5 property identifier of a user property (a UTF-8 string pair)


def _utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def _variable_int(value: int) -> bytes:
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


class EventProperties(Properties):
    """The MQTT 5 PUBLISH properties of one event (user property ``id``), packed once.

    paho's `Properties` builds its name tables per instance and packs by scanning them: a
    third of the cost of a publish. This one holds the packed bytes (what paho sends) and the
    `UserProperty` value (what paho shows), and costs one small bytes object.
    """

    UserProperty: list[tuple[str, str]]
    _packed: bytes

    def __init__(self, event_id: str) -> None:
        # not Properties.__init__: no per-instance tables; paho only calls pack() and str()
        body = bytes([_USER_PROPERTY]) + _utf8("id") + _utf8(event_id)
        object.__setattr__(self, "packetType", PacketTypes.PUBLISH)
        object.__setattr__(self, "UserProperty", [("id", event_id)])
        object.__setattr__(self, "_packed", _variable_int(len(body)) + body)

    def pack(self) -> bytes:
        """The properties as sent on the wire."""
        return self._packed

    def __str__(self) -> str:
        return f"[UserProperty : {self.UserProperty}]"


class PahoLog(logging.Logger):
    """paho's logger for one connection: hands records to `parent`, keeps the last error.

    paho reports socket and TLS errors only in its log (on_disconnect gets a bare code). An
    ``on_log`` callback would have paho format every debug line of every publish; a logger is
    asked first whether the level is enabled, so debug lines cost nothing when it is not.
    """

    def __init__(self, parent: logging.Logger) -> None:
        super().__init__(parent.name)
        self.parent = parent
        self.last_error: str | None = None

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        """As the parent (this logger is not registered, so its level cache is not cleared)."""
        return level >= logging.ERROR or bool(self.parent and self.parent.isEnabledFor(level))

    def _log(self, level: int, msg: object, args: Any, *more: Any, **kwargs: Any) -> None:
        if level >= logging.ERROR:
            self.last_error = str(msg) % args if args else str(msg)
        if self.parent is not None and self.parent.isEnabledFor(level):
            super()._log(level, msg, args, *more, **kwargs)


def raise_lost_cancellation() -> None:
    """Raise `CancelledError` if this task was cancelled but an await swallowed it.

    aiomqtt awaits SUBACKs and PUBACKs with `asyncio.wait_for`, which on Python 3.11 returns the
    result instead of raising when the cancellation arrives just as the operation completes
    (CPython gh-86296, fixed in 3.12). The task still counts the request (`cancelling()`):
    call this after such an await so a stopping agent does not carry on.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def checked_versions() -> dict[str, str]:
    """The installed aiomqtt and paho-mqtt versions as `major.minor` (compare: CHECKED_WITH)."""
    return {name: ".".join(version(name).split(".")[:2]) for name in CHECKED_WITH}


def paho_of(client: aiomqtt.Client) -> paho.Client:
    """The paho client an aiomqtt client drives (aiomqtt 2.5: its private ``_client``)."""
    inner: paho.Client = client._client  # noqa: SLF001
    return inner


def abandon(client: aiomqtt.Client) -> None:
    """Close what a failed or finished connect left open.

    paho keeps the socket of a failed handshake open; closing it (paho's private ``_sock_close``)
    also stops aiomqtt's reader and misc tasks. aiomqtt's private ``_disconnected`` future is
    marked retrieved, or asyncio logs "exception was never retrieved".
    """
    paho_of(client)._sock_close()  # noqa: SLF001
    dropped = client._disconnected  # noqa: SLF001
    if dropped.done() and not dropped.cancelled():
        dropped.exception()
