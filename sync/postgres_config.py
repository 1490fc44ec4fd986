"""The PostgreSQL destination's config model and the libpq connection settings derived from it.

`PostgresDestinationConfig` is the `kind = "postgres"` member of the destinations union; the
sink in `sync.postgres` reads it. The password, CA, client certificate and key are files, read
when the sink connects (not at validation), so a rotated password or certificate is picked up
on the next reconnect. A password, or any TLS setting, written into `dsn` is refused: they have
fields of their own, and a DSN is shown on the status page.
"""

from __future__ import annotations

from pathlib import Path  # noqa: TC003  # pydantic needs it at runtime
from typing import Literal, Self

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import Field, PositiveFloat, SecretStr, field_validator, model_validator

from sync.base import DestinationConfig
from sync.secrets import read_optional_secret

# Connection keys that have a field of their own, or that the sink sets itself.
RESERVED_KEYS = frozenset(
    {
        "password",
        "passfile",
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcrl",
        "sslcrldir",
        "requiressl",
        "connect_timeout",
        "options",
        "application_name",
    }
)
APPLICATION_NAME = "lineside"
KEEPALIVE_IDLE_S = 30  # an idle link to a vanished server is noticed within ~1 min


def _parse_dsn(value: str) -> dict[str, str]:
    try:
        parts = conninfo_to_dict(value)
    except psycopg.ProgrammingError as exc:  # libpq's own parse error, one line
        raise ValueError(" ".join(str(exc).split())) from exc
    return {k: str(v) for k, v in parts.items() if v is not None}


class PostgresDestinationConfig(DestinationConfig):
    """The plant's PostgreSQL database as a destination: events as rows of lineside.events."""

    kind: Literal["postgres"] = Field(description='Destination kind: "postgres".')
    dsn: str = Field(
        description=(
            "Where the plant database is: postgresql://USER@HOST[:PORT]/DATABASE (or libpq's "
            "key=value form). The user and the database must be named; no password here."
        ),
    )
    password_file: Path | None = Field(
        default=None,
        description="File holding the role's password (read at each connect, trailing newline "
        "stripped); without it, the server must not ask for one (e.g. client certificates).",
    )
    sslmode: Literal["disable", "require", "verify-ca", "verify-full"] = Field(
        default="verify-full",
        description="TLS: disable (none), require (encrypted, server not verified), verify-ca "
        "(server certificate signed by ca_file), verify-full (and its name matches the host).",
    )
    ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle trusted for the server's certificate; default with "
        "verify-full: the system's trust store. Required for verify-ca.",
    )
    cert_file: Path | None = Field(
        default=None, description="PEM client certificate, for servers that authenticate by it."
    )
    key_file: Path | None = Field(
        default=None,
        description="PEM private key of cert_file (mode 0600, or 0640 owned by root).",
    )
    batch_size: int = Field(
        default=500, ge=1, le=10_000, description="Most events in one transaction (one INSERT)."
    )
    connect_timeout_s: PositiveFloat = Field(
        default=10, description="Seconds to wait for the connection, TLS and login."
    )
    statement_timeout_s: PositiveFloat = Field(
        default=30,
        description="Seconds one batch's transaction may take before the link counts as down "
        "(the batch is sent again, with the same ids).",
    )

    @field_validator("dsn")
    @classmethod
    def _valid_dsn(cls, value: str) -> str:
        parts = _parse_dsn(value)
        given = sorted(RESERVED_KEYS & parts.keys())
        if given:
            raise ValueError(
                f"{', '.join(given)} do not belong in the dsn: use password_file, sslmode, "
                "ca_file, cert_file, key_file, connect_timeout_s"
            )
        missing = [key for key in ("user", "dbname") if not parts.get(key)]
        if missing:
            raise ValueError(f"the dsn must name the {' and the '.join(missing)}")
        return value

    @model_validator(mode="after")
    def _consistent_tls(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.sslmode == "disable" and (self.ca_file or self.cert_file):
            raise ValueError('ca_file, cert_file and key_file need sslmode other than "disable"')
        if self.sslmode == "require" and self.ca_file is not None:
            raise ValueError(
                'ca_file is used by sslmode "verify-ca" or "verify-full", not "require"'
            )
        if self.sslmode == "verify-ca" and self.ca_file is None:
            raise ValueError(
                'sslmode "verify-ca" needs ca_file (the system store needs verify-full)'
            )
        return self

    @property
    def target(self) -> str:
        """The database as `user@host:port/dbname`, for messages (never a password)."""
        parts = _parse_dsn(self.dsn)
        host = parts.get("host") or parts.get("hostaddr") or "localhost"
        port = parts.get("port") or "5432"
        return f"{parts['user']}@{host}:{port}/{parts['dbname']}"

    def password(self) -> SecretStr | None:
        """Read the password from `password_file` now, without its trailing newline.

        Raises `OSError` when the file cannot be read.
        """
        return read_optional_secret(self.password_file)

    def connect_kwargs(self) -> dict[str, str | int]:
        """The libpq settings besides the dsn (TLS, timeouts, keepalives); reads the password."""
        settings: dict[str, str | int] = {
            "sslmode": self.sslmode,
            "connect_timeout": max(1, round(self.connect_timeout_s)),
            "application_name": APPLICATION_NAME,
            # a time without a UTC offset is read as UTC (the envelope's times are UTC)
            "options": f"-c statement_timeout={round(self.statement_timeout_s * 1000)} "
            "-c TimeZone=UTC",
            "keepalives": 1,
            "keepalives_idle": KEEPALIVE_IDLE_S,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            # data sent and not acknowledged this long (a server gone mid-batch): link down
            "tcp_user_timeout": round(self.statement_timeout_s * 1000),
        }
        if self.sslmode in {"verify-ca", "verify-full"}:
            settings["sslrootcert"] = str(self.ca_file) if self.ca_file else "system"
        if self.cert_file is not None and self.key_file is not None:
            settings["sslcert"] = str(self.cert_file)
            settings["sslkey"] = str(self.key_file)
        password = self.password()
        if password is not None:
            settings["password"] = password.get_secret_value()
        return settings
