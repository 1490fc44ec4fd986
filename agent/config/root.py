"""The config file as a whole: `version`, `[agent]`, `[store]`, and every section joined.

The TOML file of CONTRACTS.md as frozen pydantic models, one module per section beside this one
(`status`, `line`, `scanners`, `plcs`, `destinations`, `shifts`); each driver's and sink's own
settings live beside its code in `drivers/` and `sync/`. `load_config` reports every problem as
one line naming the key path (`plcs[0].batch.trigger: ...`, worded by `agent.config.errors`),
so `check-config` and `run` refuse a bad file the same way.
"""

from __future__ import annotations

import tomllib
import zoneinfo
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from agent.config.destinations import DestinationConfig  # noqa: TC001 (pydantic resolves it at runtime)
from agent.config.errors import ConfigError, problems_of
from agent.config.fields import ID_PATTERN, Section
from agent.config.line import MIN_RANDOM_WIDTH, LineSection
from agent.config.plcs import PlcConfig  # noqa: TC001 (pydantic resolves it at runtime)
from agent.config.printers import PackingSection, PrinterConfig
from agent.config.scanners import ScannerConfig, StationRole
from agent.config.shifts import ShiftConfig  # noqa: TC001 (pydantic resolves it at runtime)
from agent.config.status import StatusSection
from sync.mqtt_config import MqttDestinationConfig

CONFIG_VERSION = 1
DEFAULT_CONFIG_PATH = Path("/etc/lineside/lineside.toml")


class AgentSection(Section):
    """Who this agent is and where it keeps its data."""

    site: str = Field(pattern=ID_PATTERN, description="Plant (site) name, part of every topic.")
    node: str = Field(pattern=ID_PATTERN, description="This line or dock, part of every topic.")
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


class StoreSection(Section):
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


def outbox_path(data_dir: Path) -> Path:
    """Where the agent keeps its outbox (and so the history) under `agent.data_dir`."""
    return data_dir / "outbox.db"


class Config(Section):
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
    printers: tuple[PrinterConfig, ...] = Field(default=(), description="Label printers.")
    packing: PackingSection = Field(
        default_factory=PackingSection, description="SSCC numbering at packing stations."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: dict[str, str] = {}
        for kind, items in (
            ("scanners", self.scanners),
            ("plcs", self.plcs),
            ("printers", self.printers),
        ):
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

    @property
    def command_broker(self) -> MqttDestinationConfig | None:
        """The mqtt destination whose broker carries commands: the one marked, else the first."""
        mqtt = [d for d in self.destinations if isinstance(d, MqttDestinationConfig)]
        marked = [d for d in mqtt if d.commands]
        if marked:
            return marked[0]
        unmarked = [d for d in mqtt if d.commands is None]
        return unmarked[0] if unmarked else None

    @model_validator(mode="after")
    def _one_command_broker(self) -> Config:
        marked = [
            i
            for i, d in enumerate(self.destinations)
            if isinstance(d, MqttDestinationConfig) and d.commands
        ]
        if len(marked) > 1:
            raise ValueError(
                f"destinations[{marked[1]}].commands: only one broker carries commands "
                f"(destinations[{marked[0]}] already does); a command bridged between brokers "
                "would be applied twice"
            )
        return self

    @model_validator(mode="after")
    def _topics_fit(self) -> Config:
        for i, dest in enumerate(self.destinations):
            if not isinstance(dest, MqttDestinationConfig) or dest.topic_style != "slashed":
                continue
            for key in ("site", "node"):
                if "." in getattr(self.agent, key):
                    raise ValueError(
                        f'agent.{key}: has a ".", which destinations[{i}].topic_style = '
                        '"slashed" is there to avoid (it is a level of every topic)'
                    )
        return self

    @model_validator(mode="after")
    def _lines_wired(self) -> Config:
        problems = line_problems(self)
        if problems:  # one `key: sentence` line each (`agent.config.errors` splits them)
            raise ValueError("\n".join(problems))
        return self

    @property
    def lines(self) -> list[PlcConfig]:
        """The node's lines: its PLCs with a `[plcs.batch]` section, in file order."""
        return [plc for plc in self.plcs if plc.batch is not None]

    def line_of(self, scanner: ScannerConfig) -> str | None:
        """The line a line scanner feeds: the one it names, else the node's only line."""
        if scanner.role is not StationRole.LINE:
            return None
        lines = self.lines
        return scanner.line or (lines[0].id if len(lines) == 1 else None)


def line_problems(config: Config) -> list[str]:
    """How the file's scanners and PLCs fail to say which line each line scan goes into."""
    lines = [plc.id for plc in config.lines]
    listed = ", ".join(lines)
    problems = [
        f"plcs[{i}].line: only a PLC with a [plcs.batch] section is a line; add one, or remove "
        "[plcs.line]"
        for i, plc in enumerate(config.plcs)
        if plc.line is not None and plc.batch is None
    ]
    if config.line.serial_mode == "random":
        problems += [
            f"plcs[{i}].line.serial_width: must be at least {MIN_RANDOM_WIDTH} when "
            f"line.serial_mode is random, got {plc.line.serial_width}"
            for i, plc in enumerate(config.plcs)
            if plc.line is not None
            and plc.line.serial_width is not None
            and plc.line.serial_width < MIN_RANDOM_WIDTH
        ]
    plcs = {plc.id for plc in config.plcs}
    for i, scanner in enumerate(config.scanners):
        key = f"scanners[{i}].line"
        if scanner.line is None:
            if scanner.role is StationRole.LINE and len(lines) > 1:
                problems.append(
                    f"{key}: required: this node has {len(lines)} lines ({listed}); "
                    "name the one this scanner feeds"
                )
            continue
        known = f"the lines are {listed}" if lines else "no PLC has a [plcs.batch] section"
        if scanner.role is not StationRole.LINE:
            problems.append(f'{key}: only a line scanner (role = "line") feeds a line')
        elif scanner.line not in plcs:
            problems.append(f"{key}: no PLC {scanner.line!r} ({known})")
        elif scanner.line not in lines:
            problems.append(
                f"{key}: PLC {scanner.line!r} has no [plcs.batch] section, so it is no line "
                f"({known})"
            )
    return problems + printer_problems(config, lines) + packing_problems(config)


def packing_problems(config: Config) -> list[str]:
    """How packing stations miss their SSCC numbering or name a printer that is not there."""
    problems: list[str] = []
    printers = {p.id for p in config.printers}
    for i, scanner in enumerate(config.scanners):
        packing = scanner.role is StationRole.PACKING
        if (
            packing
            and not config.packing.company_prefix
            and not any(p.startswith("packing.company_prefix") for p in problems)
        ):
            problems.append(
                f"packing.company_prefix: required: scanners[{i}] is a packing station, which "
                "numbers SSCCs with it (7 to 10 digits)"
            )
        if scanner.printer is None:
            continue
        if not packing:
            problems.append(
                f'scanners[{i}].printer: only a packing station (role = "packing") prints'
            )
        elif scanner.printer not in printers:
            known = ", ".join(sorted(printers)) or "none"
            problems.append(
                f"scanners[{i}].printer: no printer {scanner.printer!r} (printers: {known})"
            )
    return problems


def printer_problems(config: Config, lines: list[str]) -> list[str]:
    """How the file's printers fail to say which line's batches they label."""
    problems = []
    listed = ", ".join(lines) or "none"
    for i, printer in enumerate(config.printers):
        key = f"printers[{i}].line"
        if printer.line is not None and printer.line not in lines:
            problems.append(f"{key}: no line {printer.line!r} (the lines are {listed})")
        elif printer.line is None and printer.print_on and len(lines) > 1:
            problems.append(
                f"{key}: required: this node has {len(lines)} lines ({listed}); "
                "name the one whose batches this printer labels"
            )
    return problems


def parse_config(data: dict[str, Any]) -> Config:
    """Validate parsed TOML data; raises `ConfigError` listing every problem."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_of(exc, Config)) from exc


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
