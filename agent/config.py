"""The agent's configuration: the TOML file of CONTRACTS.md as frozen pydantic models.

Each driver's and sink's own settings live beside its code (`drivers/scanner.py`,
`drivers/modbus.py`, `sync/mqtt.py`, `sync/http.py`, `sync/files.py`); this module adds what
only the agent knows (ids, station roles, batch signals) and joins them with discriminated
unions. `load_config` reports every problem as one line naming the key path
(`plcs[0].batch.trigger: ...`), so `check-config` and `run` refuse a bad file the same way.
"""

from __future__ import annotations

import ipaddress
import string
import tomllib
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from biip import ParseError
from biip.gtin import Gtin
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from agent.scans import StationRole  # noqa: TC001 (pydantic resolves it at runtime)
from agent.shifts import ShiftConfig  # noqa: TC001 (pydantic resolves it at runtime)
from drivers.modbus import ModbusRtuSettings, ModbusTcpSettings
from drivers.registers import RegisterAddress, RegisterSpec, Table
from drivers.scanner import ScannerSettings
from sync.files import FileDestinationConfig
from sync.http import HttpDestinationConfig
from sync.mqtt import MqttDestinationConfig

CONFIG_VERSION = 1
DEFAULT_CONFIG_PATH = Path("/etc/lineside/lineside.toml")


class ConfigError(Exception):
    """The config file cannot be used; `problems` holds one `key.path: message` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class AgentSection(_Section):
    """Who this agent is and where it keeps its data."""

    site: str = Field(pattern=_ID_PATTERN, description="Plant (site) name, part of every topic.")
    node: str = Field(pattern=_ID_PATTERN, description="This line or dock, part of every topic.")
    data_dir: Path = Field(
        default=Path("/var/lib/lineside"),
        description="Directory of the outbox database and the audit log.",
    )
    timezone: str | None = Field(
        default=None,
        description="The plant's IANA time zone for production dates; default: the system's.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class StoreSection(_Section):
    """The durable outbox."""

    synchronous: Literal["full", "normal"] = Field(
        default="full",
        description="SQLite synchronous mode: full survives power loss, normal only a crash.",
    )
    max_backlog_mb: int = Field(
        default=1024,
        gt=0,
        description="Undelivered backlog limit; beyond it new events are refused with an alarm.",
    )
    retention_days: int = Field(
        default=400, gt=0, description="Delivered events are kept this long for trace queries."
    )
    min_free_mb: int = Field(
        default=64, ge=0, description="Refuse new events when the disk has less free space."
    )


class StatusSection(_Section):
    """The technicians' status page."""

    listen: str = Field(
        default="127.0.0.1:8080", description="host:port the status page listens on."
    )
    admin_password_file: Path | None = Field(
        default=None,
        description="File holding the admin password; without it control actions are off.",
    )

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


def _valid_gtin(value: str) -> str:
    try:
        Gtin.parse(value)
    except ParseError as exc:
        raise ValueError(str(exc)) from exc
    return value


GtinText = Annotated[str, Field(pattern=r"^\d{14}$"), AfterValidator(_valid_gtin)]
"""A GTIN-14 with a valid check digit."""

_TEMPLATE_FIELDS = {
    "lot": {"node", "site", "date", "batch", "work_order"},
    "trace": {"gtin", "lot", "date", "serial", "node", "site"},
}


def _check_template(template: str, allowed: set[str]) -> str:
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ValueError(f"bad template: {exc}") from exc
    unknown = {n.split(".")[0].split("[")[0] for n in names} - allowed
    if unknown:
        raise ValueError(
            f"unknown field(s) {sorted(unknown)} in template; allowed: {sorted(allowed)}"
        )
    return template


class LineSection(_Section):
    """What this line makes when no work order says otherwise, and how codes are composed."""

    gtin: GtinText | None = Field(
        default=None, description="Product GTIN-14 when no work order is active."
    )
    lot_template: str = Field(
        default="{node}{date:%y%m%d}{batch:02d}",
        description="Lot of a batch: fields node, site, date, batch (no. of the day), work_order.",
    )
    trace_template: str = Field(
        default="(01){gtin}(10){lot}(11){date:%y%m%d}(21){serial}",
        description="Trace code as a GS1 element string: fields gtin, lot, date, serial.",
    )
    serial_width: int = Field(
        default=6, ge=1, le=20, description="Serials are zero-padded to this many digits."
    )
    work_order_prefix: str | None = Field(
        default="WO:",
        description="A line scan starting with this sets the work order (none: disabled).",
    )
    operator_prefix: str | None = Field(
        default="OP:",
        description="A line scan starting with this is an operator badge (none: disabled).",
    )

    @field_validator("lot_template")
    @classmethod
    def _lot_fields(cls, value: str) -> str:
        return _check_template(value, _TEMPLATE_FIELDS["lot"])

    @field_validator("trace_template")
    @classmethod
    def _trace_fields(cls, value: str) -> str:
        return _check_template(value, _TEMPLATE_FIELDS["trace"])


class ScannerConfig(ScannerSettings):
    """One barcode scanner: its link settings plus what its scans mean."""

    id: str = Field(pattern=_ID_PATTERN, description="Scanner id, e.g. dock-in-1.")
    role: StationRole = Field(
        description="inbound → goods.received, outbound → goods.shipped, line → consumed."
    )


class BatchSignals(_Section):
    """The PLC signals of batch completion."""

    trigger: RegisterSpec = Field(
        description="Rising edge of a coil completes a batch; a register counts batches."
    )
    quantity: RegisterSpec | None = Field(
        default=None, description="Produced quantity of the batch (a counter register)."
    )
    ack: RegisterSpec | None = Field(
        default=None, description="Coil the agent sets to acknowledge the trigger (handshake)."
    )
    write_code_to: RegisterSpec | None = Field(
        default=None, description="String register block the trace code is written to."
    )
    batch_id: RegisterSpec | None = Field(
        default=None,
        description="A register naming the batch (e.g. the PLC's batch number): a request found "
        "pending after an agent restart is the stamped batch only if its id matches.",
    )

    @field_validator("ack")
    @classmethod
    def _ack_is_coil(cls, value: RegisterAddress | None) -> RegisterAddress | None:
        if value is not None and value.table is not Table.COIL:
            raise ValueError(f"{value} must be a coil (the agent sets and clears it)")
        return value

    @field_validator("write_code_to")
    @classmethod
    def _code_block_writable(cls, value: RegisterAddress | None) -> RegisterAddress | None:
        if value is not None and (value.table is not Table.HOLDING or value.length is None):
            raise ValueError(f"{value} must be holding registers of type string")
        return value


class _PlcFields(BaseModel):
    id: str = Field(pattern=_ID_PATTERN, description="PLC id, e.g. filler.")
    batch: BatchSignals | None = Field(
        default=None, description="Batch completion signals; absent for a PLC only watched."
    )
    params: dict[str, RegisterSpec] = Field(
        default_factory=dict, description="Process parameters snapshotted into batch.completed."
    )


class PlcTcpConfig(ModbusTcpSettings, _PlcFields):
    """A PLC over Modbus TCP."""


class PlcRtuConfig(ModbusRtuSettings, _PlcFields):
    """A PLC over Modbus RTU (serial)."""


PlcConfig = Annotated[PlcTcpConfig | PlcRtuConfig, Field(discriminator="protocol")]
DestinationConfig = Annotated[
    MqttDestinationConfig | HttpDestinationConfig | FileDestinationConfig,
    Field(discriminator="kind"),
]


class Config(_Section):
    """The whole agent configuration."""

    version: Literal[1] = Field(default=1, description="Config schema version.")
    agent: AgentSection = Field(description="Identity and data directory.")
    store: StoreSection = Field(default_factory=StoreSection, description="The outbox.")
    status: StatusSection = Field(default_factory=StatusSection, description="Status page.")
    line: LineSection = Field(default_factory=LineSection, description="Line defaults.")
    scanners: tuple[ScannerConfig, ...] = Field(default=(), description="Barcode scanners.")
    plcs: tuple[PlcConfig, ...] = Field(default=(), description="Line PLCs.")
    destinations: tuple[DestinationConfig, ...] = Field(
        min_length=1, description="Where events are delivered."
    )
    shifts: tuple[ShiftConfig, ...] = Field(
        default=(), description="Shift calendar: which crew is on (first match wins)."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: dict[str, str] = {}
        for kind, items in (("scanners", self.scanners), ("plcs", self.plcs)):
            for i, item in enumerate(items):
                if item.id in seen:
                    raise ValueError(
                        f"{kind}[{i}].id: {item.id!r} is already used by {seen[item.id]}"
                    )
                seen[item.id] = f"{kind}[{i}]"
        names: set[str] = set()
        for i, dest in enumerate(self.destinations):
            if dest.name in names:
                raise ValueError(f"destinations[{i}].name: {dest.name!r} is used twice")
            names.add(dest.name)
        return self


_TOP_KEYS = ("scanners[", "plcs[", "destinations[")
_TAGS = {"modbus-tcp", "modbus-rtu", "mqtt", "http", "file"}


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    previous: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(previous, int) and part in _TAGS:
            pass  # the discriminator's branch name, not a key of the file
        elif part.startswith(("function-", "constrained-")):
            pass
        else:
            out += f".{part}" if out else part
        previous = part
    return out


def problems_of(error: ValidationError) -> list[str]:
    """One `key.path: message` line per problem of a validation error."""
    lines = []
    for err in error.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        path = _key_path(tuple(err["loc"]))
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "union_tag_invalid":
            msg = str(err["msg"])
        if not path and msg.startswith(_TOP_KEYS):
            lines.append(msg)  # a whole-file check that names its own key path
        else:
            lines.append(f"{path or '(top level)'}: {msg}")
    return lines


def parse_config(data: dict[str, Any]) -> Config:
    """Validate parsed TOML data; raises `ConfigError` listing every problem."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_of(exc)) from exc


def load_config(path: Path) -> Config:
    """Read and validate a config file; raises `ConfigError` listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text: {exc}"]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: TOML syntax: {exc}"]) from exc
    return parse_config(data)
