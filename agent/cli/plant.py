"""`lineside plant migrate|trace|report|serve -c FILE`: the plant view on a terminal and as a page.

Each reads the plant config file (`agent.plant.config`; bad file: exit 2 naming the key) and
talks to the plant database with it:

- `migrate` brings the schema to this version (`agent.plant.schema`; a newer schema is refused,
  exit 1) and prints the GRANT statements each agent's role needs (`--agent-role`, repeatable);
- `trace CODE [--json]` answers across every node of the site (exit 1 when no node knows it);
- `report --lot LOT --format csv|json|epcis|fsma204 [-o FILE]` (exit 1 when unknown);
- `serve` runs the page and HTTP API (`agent.plant.server`) until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agent.plant.config import DEFAULT_PLANT_CONFIG, load_plant_config
from agent.plant.database import plant_connection
from agent.plant.history import PlantStoreError, plant_report, plant_trace
from agent.plant.reports import render_plant_report

if TYPE_CHECKING:
    import argparse

    from agent.plant.config import PlantConfig

EXIT_OK = 0
EXIT_FAILED = 1
DEFAULT_AGENT_ROLE = "lineside_agent"
PLANT_FORMATS = ("csv", "json", "epcis", "fsma204")


def plant_config_path(arg: str | None) -> Path:
    """`-c FILE`, else `LINESIDE_CONFIG` (as every command), else /etc/lineside/plant.toml."""
    return Path(arg or os.environ.get("LINESIDE_CONFIG") or DEFAULT_PLANT_CONFIG)


def _fail(message: str) -> int:
    print(f"lineside plant: {message}", file=sys.stderr)  # noqa: T201
    return EXIT_FAILED


def _write(text: str, output: str | None) -> None:
    if output:
        with open(output, "w", encoding="utf-8", newline="") as out:  # noqa: PTH123
            out.write(text)
    else:
        sys.stdout.write(text)


async def _migrate(config: PlantConfig, roles: list[str]) -> str:
    from agent.plant.schema import SCHEMA, agent_grants, migrate  # noqa: PLC0415

    async with plant_connection(config.plant) as conn:
        result = await migrate(conn)
    lines = [
        f"-- plant schema: version {result.found} -> {result.now}"
        + (
            f" (applied {', '.join(map(str, result.applied))})"
            if result.applied
            else " (no change)"
        ),
    ]
    if result.partitions_created:
        lines.append(f"-- partitions made: {', '.join(result.partitions_created)}")
    for role in roles:
        lines.append(f"-- what the agent role {role} needs (INSERT and SELECT, nothing else):")
        lines += agent_grants(role)
    lines.append(
        f"-- the plant view's role (serve, trace, report) needs to read: "
        f"GRANT USAGE ON SCHEMA {SCHEMA} TO <role>; "
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {SCHEMA} TO <role>;"
    )
    return "\n".join(lines) + "\n"


def migrate_command(args: argparse.Namespace) -> int:
    """`lineside plant migrate -c FILE [--agent-role ROLE]…`."""
    from agent.plant.schema import SchemaError  # noqa: PLC0415

    config = load_plant_config(plant_config_path(args.config))
    try:
        text = asyncio.run(_migrate(config, args.agent_role or [DEFAULT_AGENT_ROLE]))
    except (PlantStoreError, SchemaError) as exc:
        return _fail(str(exc))
    sys.stdout.write(text)
    return EXIT_OK


def trace_command(args: argparse.Namespace) -> int:
    """`lineside plant trace CODE -c FILE [--json] [-o FILE]`: 0 when found, 1 when not."""
    from agent.history.trace_format import dump_json, render_table  # noqa: PLC0415

    config = load_plant_config(plant_config_path(args.config))

    async def run() -> dict[str, object] | None:
        async with plant_connection(config.plant) as conn:
            return await plant_trace(conn, config.plant.site, str(args.code))

    try:
        result = asyncio.run(run())
    except PlantStoreError as exc:
        return _fail(str(exc))
    if result is None:
        return _fail(f"no node of site {config.plant.site} has a history of {args.code!r}")
    _write(dump_json(result) if args.json else render_table(result, scope="any node"), args.output)
    return EXIT_OK


def report_command(args: argparse.Namespace) -> int:
    """`lineside plant report --lot LOT --format … -c FILE [-o FILE]`: 0 found, 1 not."""
    config = load_plant_config(plant_config_path(args.config))

    async def run() -> dict[str, object] | None:
        async with plant_connection(config.plant) as conn:
            return await plant_report(conn, config.plant.site, str(args.lot))

    try:
        report = asyncio.run(run())
    except PlantStoreError as exc:
        return _fail(str(exc))
    if report is None:
        return _fail(f"no node of site {config.plant.site} has a history of lot {args.lot!r}")
    _write(
        render_plant_report(report, str(args.format), timezone=config.plant.timezone), args.output
    )
    return EXIT_OK


def serve_command(args: argparse.Namespace) -> int:
    """`lineside plant serve -c FILE`: the page until SIGTERM/SIGINT."""
    from agent.cli.signals import run_until_signal  # noqa: PLC0415
    from agent.plant.server import serve_plant  # noqa: PLC0415

    config = load_plant_config(plant_config_path(args.config))
    asyncio.run(run_until_signal(lambda stop: serve_plant(config, stop)))
    return EXIT_OK


def add_plant_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`lineside plant …` and its commands."""
    plant = sub.add_parser("plant", help="the plant view over the plant PostgreSQL store")
    commands = plant.add_subparsers(dest="plant_command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "-c",
            "--config",
            metavar="FILE",
            help=f"plant config file (default: $LINESIDE_CONFIG, then {DEFAULT_PLANT_CONFIG})",
        )
        return p

    migrate = with_config(commands.add_parser("migrate", help="create or upgrade the schema"))
    migrate.add_argument(
        "--agent-role",
        action="append",
        metavar="ROLE",
        help=f"print the GRANTs for this agent role (repeatable; default {DEFAULT_AGENT_ROLE})",
    )
    migrate.set_defaults(func=migrate_command)
    trace = with_config(commands.add_parser("trace", help="trace a code across every node"))
    trace.add_argument("code", help="trace code, GS1 element string, Digital Link URI, SSCC or lot")
    trace.add_argument("--json", action="store_true", help="machine-readable output")
    trace.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    trace.set_defaults(func=trace_command)
    report = with_config(commands.add_parser("report", help="a lot's chain across nodes"))
    report.add_argument("--lot", required=True, help="the lot (or GTIN|lot)")
    report.add_argument("--format", choices=PLANT_FORMATS, default="json")
    report.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    report.set_defaults(func=report_command)
    serve = with_config(commands.add_parser("serve", help="the plant view's page and API"))
    serve.set_defaults(func=serve_command)
