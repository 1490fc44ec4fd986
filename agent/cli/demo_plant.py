"""`lineside demo`: the simulated line run as a plant of three nodes and its plant view.

A broker (`demo_broker`), a private PostgreSQL under the demo folder (`demo_postgres`), the
filling-line PLC simulator on the protocol `--plc` names (`demo_plcs`), and three agents, each
with its own scanner, outbox and status page, each delivering to the broker and to the plant
database: `dock-in` (receives material pallets), `line-1` (the filler PLC and its feed scanner)
and `dock-out` (ships the line's pallets). `lineside plant serve` shows them all. The scans are
the one-agent demo's (`demo_scans.ScanFeeder`), so a trace from a shipped pallet reaches the
received material lot through three nodes. `lineside demo --single` keeps the one-agent demo
(`demo`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from agent.cli.demo import _send_work_order
from agent.cli.demo_broker import demo_broker
from agent.cli.demo_plcs import demo_plc
from agent.cli.demo_postgres import ADMIN, AGENT_ROLE, demo_postgres
from agent.cli.demo_scans import PRODUCT_GTIN, ScanFeeder, VirtualScanner, demo_folder, feed
from agent.config import load_config
from agent.plant.config import load_plant_config
from agent.plant.server import serve_plant
from agent.runtime.agent import Agent
from agent.runtime.destinations import node_topics

if TYPE_CHECKING:
    from pathlib import Path

    from agent.cli.demo_broker import DemoBroker
    from agent.cli.demo_postgres import DemoPostgres

SITE = "demo-plant"
NODES = {
    "dock-in": ("dock-in", "inbound"),
    "line-1": ("line-feed", "line"),
    "dock-out": ("dock-out", "outbound"),
}
PLANT_PORT_OFFSET = 10  # the plant view listens 10 above the first status page (8090)


def _listen_at(listen: str, offset: int) -> str:
    host, _, port = listen.rpartition(":")
    return f"{host}:{int(port) + offset if int(port) else 0}"


def node_config(
    workdir: Path,
    node: str,
    *,
    broker: DemoBroker,
    database: DemoPostgres,
    listen: str,
    plc_section: str,
) -> str:
    """One node's config file text (`plc_section`: the line's `[[plcs]]`, `demo_plcs`')."""
    scanner, role = NODES[node]
    line = f"""
[line]
gtin = "{PRODUCT_GTIN}"

{plc_section}
"""
    return f"""# Written by `lineside demo`.
[agent]
site = "{SITE}"
node = "{node}"
data_dir = "{workdir / "nodes" / node}"

[status]
listen = "{listen}"
admin_password_file = "{workdir / "admin.pw"}"
{line if role == "line" else ""}
[[scanners]]
id = "{scanner}"
role = "{role}"
port = "{workdir / "dev" / scanner}"

[[destinations]]
name = "plant-broker"
kind = "mqtt"
url = "{broker.url}"
protocol = "{broker.protocol}"

[[destinations]]
name = "plant-store"
kind = "postgres"
dsn = "{database.dsn(AGENT_ROLE)}"
password_file = "{database.agent_password_file}"
sslmode = "disable"
"""


def plant_config(workdir: Path, *, broker: DemoBroker, database: DemoPostgres, listen: str) -> str:
    """The plant view's config file text."""
    return f"""# Written by `lineside demo`.
[plant]
site = "{SITE}"
dsn = "{database.dsn(ADMIN)}"
password_file = "{database.admin_password_file}"
sslmode = "disable"
listen = "{listen}"
admin_password_file = "{workdir / "admin.pw"}"

[plant.broker]
url = "{broker.url}"
"""


def _summary(agents: dict[str, Agent]) -> str:
    seqs = " | ".join(f"{node} seq {a.outbox.last_seq:5d}" for node, a in agents.items())
    batches = sum(t.completed for t in agents["line-1"].batch_lines)
    backlog = sum(p.health.backlog for a in agents.values() for p in a.publishers)
    return f"{seqs} | batches {batches:3d} | backlog {backlog:4d}"


async def run_plant_demo(
    stop: asyncio.Event,
    *,
    workdir: Path,
    listen: str,
    rate: float,
    quiet: bool,
    broker_kind: str = "auto",
    batch_seconds: float = 30.0,
    plc: str = "modbus",
) -> None:
    """Run the three-node plant and its plant view until `stop` is set."""
    workdir = await demo_folder(workdir)
    scanners = {scanner: VirtualScanner(workdir / "dev" / scanner) for scanner, _ in NODES.values()}
    units_per_s = 4.0
    try:
        async with (
            demo_broker(workdir, broker_kind) as broker,
            demo_postgres(workdir) as database,
            demo_plc(
                plc,
                batch_units=max(1, int(units_per_s * batch_seconds)),
                units_per_s=units_per_s,
            ) as line_plc,
        ):
            agents: dict[str, Agent] = {}
            for offset, node in enumerate(NODES):
                path = workdir / f"{node}.toml"
                path.write_text(
                    node_config(
                        workdir,
                        node,
                        broker=broker,
                        database=database,
                        listen=_listen_at(listen, offset),
                        plc_section=line_plc.section,
                    )
                )
                agents[node] = Agent(load_config(path))
            plant_file = workdir / "plant.toml"
            plant_file.write_text(
                plant_config(
                    workdir,
                    broker=broker,
                    database=database,
                    listen=_listen_at(listen, PLANT_PORT_OFFSET),
                )
            )
            await _run(
                stop,
                agents,
                scanners,
                plant_file,
                broker,
                database,
                line_plc.where,
                rate=rate,
                quiet=quiet,
            )
    finally:
        for scanner in scanners.values():
            scanner.close()
    print("Lineside demo stopped.", flush=True)  # noqa: T201


async def _run(  # noqa: PLR0917
    stop: asyncio.Event,
    agents: dict[str, Agent],
    scanners: dict[str, VirtualScanner],
    plant_file: Path,
    broker: DemoBroker,
    database: DemoPostgres,
    plc_where: str,
    *,
    rate: float,
    quiet: bool,
) -> None:
    agents_stop, plant_stop = asyncio.Event(), asyncio.Event()
    workdir = plant_file.parent
    async with asyncio.TaskGroup() as group:
        running = []
        for node, agent in agents.items():
            ready = asyncio.Event()
            running.append(group.create_task(agent.run(agents_stop, ready=ready.set), name=node))
            await ready.wait()
        plant_url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        plant = group.create_task(
            serve_plant(load_plant_config(plant_file), plant_stop, ready=plant_url.set_result),
            name="plant-view",
        )
        async with asyncio.timeout(20):
            for agent in agents.values():
                seen = agent.state.version
                while agent.status_url is None:
                    seen = await agent.state.wait_changed(seen)
            await plant_url
        admin = (workdir / "admin.pw").read_text().strip()
        pages = "".join(f"  {node + ':':<13} {a.status_url}\n" for node, a in agents.items())
        watch = f"mosquitto_sub -h {broker.host} -p {broker.port} -t 'lineside/v1/{SITE}/#' -v"
        # The first two lines are the one-agent demo's (the contract's "the page's URL and the
        # broker address"): the line's page, then the broker; the plant's own lines follow.
        print(  # noqa: T201 (the demo's output)
            f"Lineside demo running: the plant {SITE}, three nodes and the plant view.\n"
            f"  status page:  {agents['line-1'].status_url}   (line-1; admin password: {admin})\n"
            f"  broker:       {broker.url}  ({broker.kind})\n"
            f"  plant view:   {plant_url.result()}   (admin password: {admin})\n"
            f"{pages}"
            f"  watch events: {watch}\n"
            f"  plant db:     {database.dsn(ADMIN)}  (password in {database.admin_password_file})\n"
            f"  PLC:          {plc_where}\n"
            f"  configs:      {workdir}/{{dock-in,line-1,dock-out}}.toml, {plant_file}\n"
            f"  plant trace:  lineside plant trace CODE -c {plant_file}\n"
            "Ctrl-C stops.",
            flush=True,
        )
        line = agents["line-1"].config
        assert line.command_broker is not None  # the demo's config has its broker
        await _send_work_order(broker, node_topics(line, line.command_broker))
        feeder = ScanFeeder(agents["line-1"], dict(scanners), seed=1)
        await feed(
            stop, feeder, [*running, plant], lambda: _summary(agents), rate=rate, quiet=quiet
        )
        plant_stop.set()
        await asyncio.wait([plant])
        agents_stop.set()
