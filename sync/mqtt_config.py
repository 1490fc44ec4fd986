"""The MQTT destination's config model and what is derived from it (address, TLS, password).

`MqttDestinationConfig` is the `kind = "mqtt"` member of the destinations union; the sink in
`sync.mqtt` reads it. Files named here (CA, client certificate, password) are read at connect,
not at validation, so a rotated certificate or password is picked up on the next reconnect.
"""

from __future__ import annotations

import ssl
from pathlib import Path  # noqa: TC003  # pydantic needs it at runtime
from typing import Literal
from urllib.parse import SplitResult, urlsplit

from pydantic import Field, PositiveFloat, SecretStr, field_validator, model_validator

from sync.base import DestinationConfig
from sync.secrets import read_optional_secret
from sync.topics import Topics, TopicStyle

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


def _split(url: str) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"scheme must be mqtt:// or mqtts://, not {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise ValueError("url has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials do not belong in the url: use username and password_file")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("url takes no path, query or fragment: mqtt[s]://host[:port]")
    try:
        port = parts.port
    except ValueError as exc:  # out of range or not a number
        raise ValueError(f"invalid port: {exc}") from exc
    if port == 0:
        raise ValueError("port must be within 1..65535")
    return parts


class ClosingSSLSocket(ssl.SSLSocket):
    """An `SSLSocket` that closes itself when its handshake fails.

    paho leaves the socket of a failed handshake open (a ResourceWarning, and a file
    descriptor per reconnect attempt against a broker with the wrong CA).
    """

    def do_handshake(self, block: bool = False) -> None:  # noqa: FBT001, FBT002  # stdlib signature
        """Do the handshake; close the socket if it fails."""
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


class MqttDestinationConfig(DestinationConfig):
    """An MQTT broker as a destination: events as QoS 1 publishes, agent state retained."""

    kind: Literal["mqtt"] = Field(description='Destination kind; "mqtt" for an MQTT broker.')
    url: str = Field(
        description=(
            "Broker address, mqtt://host[:port] (default port 1883) or mqtts://host[:port] "
            "for TLS (default port 8883)."
        ),
    )
    topic_prefix: str = Field(
        default="lineside/v1",
        min_length=1,
        description="Topic prefix; events go to {topic_prefix}/{site}/{node}/{type}.",
    )
    topic_style: TopicStyle = Field(
        default="dotted",
        description='How an event type becomes topic levels: "dotted" keeps it as it is '
        '(.../goods.received), "slashed" writes its dots as levels (.../goods/received) for '
        "brokers that refuse a '.' inside a topic level (NATS). state and cmd/ are the same "
        "in both.",
    )
    commands: bool | None = Field(
        default=None,
        description="Whether the agent listens for commands (cmd/...) on this broker. One "
        "broker only, so a command bridged between brokers is applied once; default: the "
        "first mqtt destination.",
    )
    ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle trusted for the broker's certificate (mqtts); "
        "default: the system's trust store.",
    )
    cert_file: Path | None = Field(
        default=None, description="PEM client certificate for mutual TLS (mqtts)."
    )
    key_file: Path | None = Field(
        default=None,
        description="PEM private key of the client certificate (mqtts); "
        "omit when cert_file holds the key too.",
    )
    username: str | None = Field(
        default=None, min_length=1, description="MQTT user name, if the broker wants one."
    )
    password_file: Path | None = Field(
        default=None,
        description="File holding the MQTT password (read at each connect, trailing "
        "newline stripped); requires username.",
    )
    protocol: Literal["5", "3.1.1"] = Field(
        default="5",
        description='MQTT protocol version; "5" reports refused publishes by reason code.',
    )
    window: int = Field(
        default=100,
        ge=1,
        le=65535,
        description="QoS 1 publishes in flight at once (awaiting PUBACK).",
    )
    client_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=65535,
        description="MQTT client identifier; default derived from site and node.",
    )
    keepalive: int = Field(
        default=30, ge=1, le=65535, description="MQTT keepalive interval in seconds."
    )
    connect_timeout: PositiveFloat = Field(
        default=10, description="Seconds to wait for the TCP/TLS connection and the CONNACK."
    )
    publish_timeout: PositiveFloat = Field(
        default=10,
        description="Seconds to wait for a PUBACK before the link counts as down "
        "(the event is sent again, with the same id).",
    )

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        _split(value)
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        if any(c in value for c in "+#\0") or value.startswith("/") or value.endswith("/"):
            raise ValueError("topic_prefix must not contain + # or NUL, nor start/end with /")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MqttDestinationConfig:
        if not self.tls and (self.ca_file or self.cert_file or self.key_file):
            raise ValueError("ca_file, cert_file and key_file need an mqtts:// url")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs username")
        if self.topic_style == "slashed" and "." in self.topic_prefix:
            raise ValueError(
                'topic_prefix: has a ".", which topic_style = "slashed" is there to avoid '
                "(brokers that refuse a '.' inside a topic level)"
            )
        return self

    def topics(self, site: str, node: str) -> Topics:
        """The topics of node `node` of site `site` on this broker, in this topic style."""
        return Topics.of(self.topic_prefix, site, node, self.topic_style)

    @property
    def tls(self) -> bool:
        """Whether the broker is reached over TLS (mqtts://)."""
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def host(self) -> str:
        """The broker's host name or address."""
        host = _split(self.url).hostname
        assert host is not None  # checked by the validator
        return host

    @property
    def port(self) -> int:
        """The broker's port (the scheme's default when the url has none)."""
        parts = _split(self.url)
        return parts.port or DEFAULT_PORTS[parts.scheme]

    def password(self) -> SecretStr | None:
        """Read the password from `password_file` now, without its trailing newline.

        Raises `OSError` when the file cannot be read.
        """
        return read_optional_secret(self.password_file)

    def ssl_context(self) -> ssl.SSLContext | None:
        """Build a verifying TLS context for mqtts:// (None for mqtt://), reading the files now.

        Verification and the host name check are on; `ca_file` is the trust store if given,
        else the system's. Raises `OSError`/`ssl.SSLError` for unreadable or invalid files.
        """
        if not self.tls:
            return None
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file) if self.ca_file else None
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.sslsocket_class = ClosingSSLSocket
        if self.cert_file is not None:
            context.load_cert_chain(
                str(self.cert_file), str(self.key_file) if self.key_file else None
            )
        return context
