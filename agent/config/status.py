"""`[status]`: the technicians' status page, and the admin password its control actions need.

`read_admin_password` reads `admin_password_file` (the agent at start, `check-config` in its
preflight), so a file that cannot be read or holds nothing fails both the same way.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path  # noqa: TC003 (pydantic resolves it at runtime)
from typing import Annotated

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator

from agent.config.errors import ConfigError
from agent.config.fields import Section

_HOST_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"^{_HOST_LABEL}(\.{_HOST_LABEL})*\.?$")


def _allowed_host(value: str) -> str:
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        if not _HOST_NAME.match(value) or len(value) > 253:  # noqa: PLR2004 (DNS name limit)
            raise ValueError(
                f"{value!r} is not a host name (a name only: no scheme, port, path or wildcard)"
            ) from None
    return value


class StatusSection(Section):
    """The technicians' status page."""

    listen: str = Field(
        default="127.0.0.1:8080", description="host:port the status page listens on."
    )
    admin_password_file: Path | None = Field(
        default=None,
        description="File holding the admin password; without it control actions are off.",
    )
    allowed_hosts: tuple[Annotated[str, AfterValidator(_allowed_host)], ...] = Field(
        default=(),
        description="Host names browsers use to reach the page, besides localhost and this "
        "machine's name (IP addresses are always accepted); any other Host gets 400.",
    )
    max_connections: int = Field(
        default=128,
        ge=8,
        le=4096,
        description="Connections held at once; a new one beyond closes the longest-waiting one.",
    )
    max_streams: int = Field(
        default=32, ge=1, description="Live page updates (open pages) at once; beyond: 503."
    )
    audit_max_mb: int = Field(
        default=10, ge=1, le=1024, description="The audit log is rotated at this size."
    )
    audit_files: int = Field(
        default=5, ge=1, le=100, description="Rotated audit log files kept (audit.log.1 ...)."
    )

    @model_validator(mode="after")
    def _streams_leave_room(self) -> StatusSection:
        if self.max_streams >= self.max_connections:
            msg = f"max_streams ({self.max_streams}) must be below max_connections"
            raise ValueError(msg)
        return self

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:  # noqa: PLR2004
            raise ValueError(f"expected host:port, got {value!r}")
        if host.strip("[]") != "localhost" and not host[0].isalpha():
            try:
                ipaddress.ip_address(host.strip("[]"))
            except ValueError as exc:
                raise ValueError(f"bad listen address {host!r}") from exc
        return value

    @property
    def host(self) -> str:
        """The address to bind."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The port to bind."""
        return int(self.listen.rpartition(":")[2])


def read_admin_password(path: Path | None) -> SecretStr | None:
    """The admin password from its file (trailing newline stripped).

    `ConfigError` if the file cannot be read, or holds nothing but whitespace (which would make
    a blank password log in).
    """
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(
            [f"status.admin_password_file: cannot read {path}: {exc.strerror or exc}"]
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"status.admin_password_file: {path} is not UTF-8: {exc}"]) from exc
    if not text.strip():
        state = "empty" if not text else "blank (only whitespace)"
        raise ConfigError(
            [f"status.admin_password_file: {path} is {state}: write the password into it"]
        )
    return SecretStr(text)
