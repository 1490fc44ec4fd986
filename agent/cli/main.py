"""The `lineside` command line (CONTRACTS.md): run, demo, check-config, trace, report, bench, plant.

Exit codes: 0 ok, 2 bad usage or bad config, 1 anything else. Errors are one clear line on
stderr, with a traceback only under `--debug`. Only this module configures logging.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from agent import __version__
from agent.cli.plant import add_plant_parser
from agent.cli.signals import run_until_signal
from agent.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from agent.text import EscapingFormatter

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger("lineside")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad usage: exit 2."""


def config_path(arg: str | None) -> Path:
    """`-c FILE`, else `LINESIDE_CONFIG`, else the default path."""
    return Path(arg or os.environ.get("LINESIDE_CONFIG") or DEFAULT_CONFIG_PATH)


def _load(args: argparse.Namespace) -> Config:
    return load_config(config_path(args.config))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _configure_logging(*, debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    # Log lines carry text from the network and devices: no raw control characters in them.
    handler.setFormatter(EscapingFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler])
    if not debug:
        for noisy in ("aiosqlite", "pymodbus", "uvicorn.access", "httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _cmd_check_config(args: argparse.Namespace) -> int:
    from agent.config.preflight import preflight  # noqa: PLC0415
    from agent.printing.checks import template_problems  # noqa: PLC0415

    path = config_path(args.config)
    config = load_config(path)
    problems = preflight(config) + template_problems(config)
    if problems:
        raise ConfigError(problems)
    print(f"{path}: ok")  # noqa: T201 (the command's output)
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from agent.config.preflight import preflight  # noqa: PLC0415
    from agent.printing.checks import template_problems  # noqa: PLC0415

    config = _load(args)  # a bad config is refused here, before any device is touched
    problems = preflight(config, new_outbox=args.new_outbox)  # as check-config refuses it
    problems += template_problems(config)
    if problems:
        raise ConfigError(problems)
    from agent.runtime.agent import Agent  # noqa: PLC0415 (heavy imports only for commands that run)
    from sync.base import OutboxDamaged, OutboxMissing  # noqa: PLC0415

    if args.new_outbox:
        log.warning("run --new-outbox: a missing or empty outbox will be started anew at seq 1")
    agent = Agent(config, new_outbox=args.new_outbox)
    try:
        asyncio.run(run_until_signal(agent.run))
    except (OutboxDamaged, OutboxMissing) as exc:  # found at open: the operator must act
        raise UsageError(f"agent.data_dir: {exc}") from exc
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from agent.cli.demo import run_demo  # noqa: PLC0415
    from agent.cli.demo_plant import run_plant_demo  # noqa: PLC0415
    from agent.cli.demo_plcs import enip_available  # noqa: PLC0415
    from agent.cli.demo_postgres import postgres_bindir  # noqa: PLC0415

    if args.plc == "enip" and not enip_available():
        raise UsageError(
            "--plc enip: the Logix simulator needs cpppo: pip install 'lineside[demo]'"
        )

    single = args.single
    if not single and postgres_bindir() is None:  # no PostgreSQL here: the one-agent demo
        log.warning(
            "PostgreSQL is not installed (apt-get install postgresql; make demo installs it): "
            "running the one-agent demo instead of the plant (lineside demo --single)"
        )
        single = True
    demo = run_demo if single else run_plant_demo
    asyncio.run(
        run_until_signal(
            lambda stop: demo(
                stop,
                workdir=Path(args.dir),
                listen=args.listen,
                rate=args.rate,
                quiet=args.quiet,
                broker_kind=args.broker,
                batch_seconds=args.batch_seconds,
                plc=args.plc,
            )
        )
    )
    return EXIT_OK


def _cmd_trace(args: argparse.Namespace) -> int:
    from agent.cli.history_commands import trace_command  # noqa: PLC0415

    return trace_command(_load(args), args)


def _cmd_report(args: argparse.Namespace) -> int:
    from agent.cli.history_commands import report_command  # noqa: PLC0415

    return report_command(_load(args), args)


def _cmd_bench(args: argparse.Namespace) -> int:
    from agent.cli.bench import bench_command  # noqa: PLC0415

    return bench_command(args)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from agent.cli.doctor import doctor_command  # noqa: PLC0415

    return doctor_command(_load(args), args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="lineside", description="Lineside: shop-floor traceability edge agent."
    )
    parser.add_argument("--version", action="version", version=f"lineside {__version__}")
    parser.add_argument("--debug", action="store_true", help="verbose logs, tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "-c",
            "--config",
            metavar="FILE",
            help=f"config file (default: $LINESIDE_CONFIG, then {DEFAULT_CONFIG_PATH})",
        )
        return p

    run = with_config(sub.add_parser("run", help="run the agent"))
    run.add_argument(
        "--new-outbox",
        action="store_true",
        help="start a new outbox (seq 1) where the data directory records one that is now "
        "missing or empty (logged, and an alarm while it runs); never replaces one that is there",
    )
    run.set_defaults(func=_cmd_run)
    with_config(
        sub.add_parser("check-config", help="validate the config file (exit 2 if bad)")
    ).set_defaults(func=_cmd_check_config)
    trace = with_config(
        sub.add_parser("trace", help="reverse and forward trace of a code, SSCC or lot")
    )
    trace.add_argument("code", help="trace code, GS1 element string, Digital Link URI, SSCC or lot")
    trace.add_argument("--json", action="store_true", help="machine-readable output")
    trace.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    trace.set_defaults(func=_cmd_trace)
    report = with_config(sub.add_parser("report", help="compliance report of one lot"))
    report.add_argument("--lot", required=True, help="the lot (or GTIN|lot)")
    report.add_argument("--format", choices=("csv", "json", "epcis"), default="json")
    report.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    report.set_defaults(func=_cmd_report)
    bench = sub.add_parser("bench", help="measure this hardware and broker")
    bench.add_argument("--broker", metavar="URL", help="mqtt://host:port (default: own mosquitto)")
    bench.add_argument("--json", action="store_true", help="machine-readable output")
    bench.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    bench.add_argument(
        "--plant",
        action="store_true",
        help="the plant store instead: postgres destination vs raw COPY, trace and report "
        "times over 1,000,000 events (a private PostgreSQL of its own)",
    )
    bench.add_argument("--dir", help="working directory (default: a temporary one)")
    bench.add_argument(
        "--scanners",
        type=_positive_int,
        help="scanners reading at once in the end-to-end run "
        "(default: agent.cli.bench.SCANNERS, 32)",
    )
    bench.set_defaults(func=_cmd_bench)
    doctor = with_config(sub.add_parser("doctor", help="check devices, destinations, disk, clock"))
    doctor.set_defaults(func=_cmd_doctor)
    demo = sub.add_parser(
        "demo", help="a simulated plant (three nodes, plant view) on this machine"
    )
    demo.add_argument(
        "--single", action="store_true", help="one agent with every scanner (no PostgreSQL)"
    )
    demo.add_argument("--dir", default=".demo", help="working directory (default .demo)")
    demo.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        help="status page address (the plant's nodes take this port and the next two, its "
        "plant view this port + 10; port 0: free ports)",
    )
    demo.add_argument("--rate", type=float, default=1.0, help="simulated scans per second")
    demo.add_argument("--quiet", action="store_true", help="no live summary line")
    demo.add_argument(
        "--broker",
        choices=("auto", "mosquitto", "embedded"),
        default="auto",
        help="mosquitto if installed (auto), or the embedded amqtt broker",
    )
    demo.add_argument(
        "--batch-seconds", type=float, default=30.0, help="simulated batch duration (default 30)"
    )
    demo.add_argument(
        "--plc",
        choices=("modbus", "opcua", "s7", "enip"),
        default="modbus",
        help="the simulated PLC's protocol (default modbus)",
    )
    demo.set_defaults(func=_cmd_demo)
    add_plant_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lineside` console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help/--version
        return int(exc.code or 0)
    _configure_logging(debug=args.debug)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    except UsageError as exc:
        print(f"lineside: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as exc:
        if args.debug:
            raise
        print(f"lineside: {type(exc).__name__}: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_FAILURE
    return code
