"""Run the plant store's micro-benchmark by hand on a PostgreSQL of its own (not a test).

    .venv/bin/python tests/plant_bench.py [EVENTS] [--fsync off]

Starts a cluster as the tests do (initdb in a temporary directory, a free loopback port),
runs `agent.plant.bench.measure` against it and prints the rates and their ratios to COPY.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from postgres_support import PostgresTemplate

from agent.plant.bench import measure


def main(argv: list[str]) -> int:
    events = int(argv[0]) if argv and argv[0].isdigit() else 50_000
    template = PostgresTemplate.make()
    cluster = template.cluster()
    if "--fsync" in argv:
        cluster.settings["fsync"] = argv[argv.index("--fsync") + 1]
    try:
        cluster.start()
        with tempfile.TemporaryDirectory() as scratch:
            figures = asyncio.run(measure(cluster.admin_conninfo(), Path(scratch), events=events))
        rates = {k: round(getattr(figures, k)) for k in ("drain", "insert", "unnest", "copy")}
        report = {"events_per_s": rates, "ratio_to_copy": figures.ratios()}
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    finally:
        cluster.remove()
        template.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
