"""The plant view's own config file: `[plant]` (the database, the page) and `[plant.broker]`.

Frozen pydantic models like the agent's (`extra="forbid"`, a description on every field);
`load_plant_config` reports every problem as one line naming the key (`plant.dsn: ...`), the
way the agent's `load_config` does, so `lineside plant …` refuses a bad file with exit 2.
The plant's DSN follows the agent destination's rules (`sync.postgres_config`): no password
in it (`password_file`), TLS by its own keys.
"""

from __future__ import annotations

import tomllib
import zoneinfo
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator

from agent.config.errors import ConfigError, problems_of
from agent.config.fields import ID_PATTERN, Section
from agent.config.status import StatusSection
from sync.postgres_config import PostgresDestinationConfig

DEFAULT_PLANT_CONFIG = Path("/etc/lineside/plant.toml")


class PlantBroker(Section):
    """The plant broker, read for every agent's retained state (online, health)."""

    url: str = Field(description="mqtt://host[:port] (1883) of the plant broker.")
    topic_prefix: str = Field(
        default="lineside/v1", description="The agents' topic prefix (their destinations')."
    )
    username: str | None = Field(default=None, description="MQTT user name (read-only is enough).")
    password_file: Path | None = Field(default=None, description="File holding the password.")

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        if not value.startswith("mqtt://"):
            raise ValueError(f"expected mqtt://host[:port], got {value!r}")
        return value

    @property
    def host(self) -> str:
        """The broker's host name or address."""
        return self.url.removeprefix("mqtt://").rstrip("/").rpartition(":")[0] or self._netloc

    @property
    def _netloc(self) -> str:
        return self.url.removeprefix("mqtt://").rstrip("/")

    @property
    def port(self) -> int:
        """The broker's port."""
        _, sep, port = self._netloc.rpartition(":")
        return int(port) if sep and port.isdigit() else 1883


class PlantSection(Section):
    """One site's plant view over its PostgreSQL store."""

    site: str = Field(pattern=ID_PATTERN, description="The site whose nodes this view shows.")
    dsn: str = Field(
        description="The plant database: postgresql://USER@HOST[:PORT]/DATABASE (no password)."
    )
    password_file: Path | None = Field(default=None, description="File holding the password.")
    sslmode: Literal["disable", "require", "verify-ca", "verify-full"] = Field(
        default="verify-full", description="TLS to the database, as for the postgres destination."
    )
    ca_file: Path | None = Field(default=None, description="PEM CA of the database's certificate.")
    cert_file: Path | None = Field(default=None, description="PEM client certificate.")
    key_file: Path | None = Field(default=None, description="PEM key of cert_file.")
    listen: str = Field(default="127.0.0.1:8090", description="host:port the page listens on.")
    admin_password_file: Path | None = Field(
        default=None, description="File holding the admin password; without it, no actions."
    )
    allowed_hosts: tuple[str, ...] = Field(
        default=(), description="Host names browsers use to reach the page (as [status])."
    )
    timezone: str | None = Field(
        default=None, description="The plant's IANA time zone for report dates."
    )
    broker: PlantBroker | None = Field(
        default=None, description="The plant broker, for the agents' live state (optional)."
    )
    fleet_recheck_s: float = Field(
        default=60.0,
        ge=0,
        description=(
            "Seconds between full reads of a node's seqs for the fleet (rows deleted by hand "
            "show then); in between, each request reads only new rows and known gaps."
        ),
    )

    @model_validator(mode="after")
    def _usable(self) -> Self:
        for check in (self.database, self.status):
            try:
                check()
            except ValidationError as exc:
                raise ValueError(
                    "; ".join(
                        f"{'.'.join(str(p) for p in e['loc']) or 'plant'}: "
                        f"{e['msg'].removeprefix('Value error, ')}"
                        for e in exc.errors()
                    )
                ) from None
        return self

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    def database(self) -> PostgresDestinationConfig:
        """The database settings, validated by the postgres destination's own rules."""
        fields = {
            "name": "plant",
            "kind": "postgres",
            "dsn": self.dsn,
            "password_file": self.password_file,
            "sslmode": self.sslmode,
            "ca_file": self.ca_file,
            "cert_file": self.cert_file,
            "key_file": self.key_file,
        }
        return PostgresDestinationConfig.model_validate(fields)

    def status(self) -> StatusSection:
        """The page's settings, as the agent's `[status]` holds them (same checks)."""
        return StatusSection(
            listen=self.listen,
            admin_password_file=self.admin_password_file,
            allowed_hosts=self.allowed_hosts,
        )


class PlantConfig(Section):
    """The plant view's config file."""

    version: Literal[1] = Field(default=1, description="Config schema version.")
    plant: PlantSection = Field(description="The site, its database and the page.")


def load_plant_config(path: Path) -> PlantConfig:
    """Read and validate a plant config file; `ConfigError` lists every problem by key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([f"{path}: {exc}"]) from exc
    try:
        return PlantConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_of(exc, PlantConfig)) from exc
