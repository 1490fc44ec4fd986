"""`lineside trace CODE` and `lineside report --lot LOT`: the history's answers on a terminal.

Both read the outbox file of `agent.data_dir` read-only (the agent may be running), print the
answer (`agent.history.trace_format` for a trace, `agent.history.reports` for a report) to
stdout or `-o FILE`, and exit 0 when this node has history of the query, 1 when not.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

from agent.config.root import outbox_path
from agent.history.reader import HistoryError
from agent.history.reports import render_report, report_file
from agent.history.trace import trace_file
from agent.history.trace_format import dump_json, render_table

if TYPE_CHECKING:
    import argparse

    from agent.config import Config

EXIT_OK = 0
EXIT_NOT_FOUND = 1


def trace_command(config: Config, args: argparse.Namespace) -> int:
    """`lineside trace CODE [--json] [-o FILE]`: 0 when found, 1 when not."""
    try:
        result = asyncio.run(trace_file(outbox_path(config.agent.data_dir), str(args.code)))
    except HistoryError as exc:
        print(f"lineside: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_NOT_FOUND
    if result is None:
        print(f"lineside: no history of {args.code!r} on this node", file=sys.stderr)  # noqa: T201
        return EXIT_NOT_FOUND
    text = dump_json(result) if args.json else render_table(result)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:  # noqa: PTH123
            out.write(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def report_command(config: Config, args: argparse.Namespace) -> int:
    """`lineside report --lot LOT --format csv|json|epcis [-o FILE]`: 0 when found, 1 if not."""
    try:
        report = asyncio.run(report_file(outbox_path(config.agent.data_dir), str(args.lot)))
    except HistoryError as exc:
        print(f"lineside: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_NOT_FOUND
    if report is None:
        print(f"lineside: no history of lot {args.lot!r} on this node", file=sys.stderr)  # noqa: T201
        return EXIT_NOT_FOUND
    text = render_report(report, str(args.format), timezone=config.agent.timezone)
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as out:  # noqa: PTH123
            out.write(text)
    else:
        sys.stdout.write(text)
    return EXIT_OK
