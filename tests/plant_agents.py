"""A three-node plant in a test: dock-in, line-1 (the filling-line PLC simulator) and dock-out.

Each node is a real agent (in process) with its own pty scanner, outbox and status page,
delivering to the test's mosquitto and to one plant PostgreSQL as the agent role. `run_plant`
receives two material pallets at dock-in, consumes them at line-1 (operator badge, carton
scans), lets the PLC complete a batch of 120 and ships a pallet of it at dock-out, then waits
until every node's events are in the store. With `packing`, dock-out first builds that pallet
at its packing station (`PACK:NEW`, the batch's trace code, `PACK:CLOSE`) and ships the SSCC
the station allocated. `plant_config` writes the plant view's own file.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent_harness import running_agent, write_config
from plant_support import AGENT_ROLE, Plant
from postgres_support import ADMIN_PASSWORD
from support import Pty, wait_until
from test_e2e_trace import plc_config
from test_packing import ACK, scan
from trace_history import MATERIAL_1, MATERIAL_2, PRODUCT, carton_label, pallet_label

from agent.cli.trace_bench import sscc
from drivers.simulators.modbus_plc import FillingLineSimulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from support import Broker

    from agent.runtime.agent import Agent

PALLET_A, PALLET_B, PALLET_OUT = sscc(11), sscc(12), sscc(21)
NODES = ("dock-in", "line-1", "dock-out")


def store_destination(plant: Plant) -> str:
    """The `[[destinations]]` entry of the plant store, as the agent role."""
    return (
        "[[destinations]]\n"
        'name = "plant-store"\n'
        'kind = "postgres"\n'
        f'dsn = "{plant.cluster.dsn(AGENT_ROLE)}"\n'
        f'password_file = "{plant.password_file}"\n'
        'sslmode = "disable"\n'
    )


def node_config(
    root: Path,
    node: str,
    broker: Broker,
    *,
    role: str,
    pty: Pty,
    extra: str,
    more: dict[str, tuple[str, Pty]] | None = None,
) -> Path:
    """One node's config file under `root/node` (`more`: other scanners, id → (role, pty))."""
    where = root / node
    where.mkdir(parents=True, exist_ok=True)
    path = write_config(where, broker, {node: (role, pty), **(more or {})}, extra=extra)
    path.write_text(path.read_text().replace('node = "line-3"', f'node = "{node}"'))
    return path


def plant_config(root: Path, plant: Plant, broker: Broker | None = None, **plant_keys: str) -> Path:
    """The plant view's config file: the site, the database as its superuser, the broker."""
    password = root / "plant-admin-db.pw"
    password.write_text(ADMIN_PASSWORD + "\n")
    lines = [
        "[plant]",
        'site = "plant-a"',
        f'dsn = "{plant.cluster.dsn()}"',
        f'password_file = "{password}"',
        'sslmode = "disable"',
        'timezone = "Asia/Shanghai"',
        *(f'{key} = "{value}"' for key, value in plant_keys.items()),
    ]
    if broker is not None:
        lines += ["[plant.broker]", f'url = "{broker.url}"']
    path = root / "plant.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class ThreeNodes:
    """The running agents, by node, and the lot the line made."""

    agents: dict[str, Agent]
    lot: str
    sscc: str
    """The pallet shipped at dock-out."""
    trace_code: str


@contextlib.asynccontextmanager
async def three_nodes(
    root: Path, broker: Broker, plant: Plant, *, packing: bool = False
) -> AsyncIterator[ThreeNodes]:
    """The three agents running, the material received, the batch made (packed) and shipped."""
    ptys = {node: Pty(root / f"{node}.tty") for node in (*NODES, *(("pack-1",) * packing))}
    for p in ptys.values():
        p.plug()
    store = store_destination(plant)
    try:
        async with FillingLineSimulator(port=0, auto=False, seed=3) as sim:
            configs = {
                "dock-in": node_config(
                    root, "dock-in", broker, role="inbound", pty=ptys["dock-in"], extra=store
                ),
                "line-1": node_config(
                    root,
                    "line-1",
                    broker,
                    role="line",
                    pty=ptys["line-1"],
                    extra=store + plc_config(sim.port),
                ),
                "dock-out": node_config(
                    root,
                    "dock-out",
                    broker,
                    role="outbound",
                    pty=ptys["dock-out"],
                    extra=store + ('[packing]\ncompany_prefix = "0950110"\n' * packing),
                    more={"pack-1": ("packing", ptys["pack-1"])} if packing else None,
                ),
            }
            async with (
                running_agent(configs["dock-in"]) as dock_in,
                running_agent(configs["line-1"]) as line,
                running_agent(configs["dock-out"]) as dock_out,
            ):
                agents = {"dock-in": dock_in, "line-1": line, "dock-out": dock_out}
                ptys["dock-in"].write(pallet_label(PALLET_A, MATERIAL_1, "MAT-A", 40) + b"\r\n")
                ptys["dock-in"].write(pallet_label(PALLET_B, MATERIAL_2, "MAT-B", 40) + b"\r\n")
                tracker = line.batch_lines.named(None)
                ptys["line-1"].write(b"OP:JANE\r\n")
                await wait_until(lambda: tracker.operator == "JANE", what="operator badge")
                ptys["line-1"].write(carton_label(MATERIAL_1, "MAT-A", "C1") + b"\r\n")
                ptys["line-1"].write(carton_label(MATERIAL_2, "MAT-B", "C2") + b"\r\n")
                await wait_until(
                    lambda: tracker.open is not None and len(tracker.open.materials) == 2,
                    what="two materials consumed",
                )
                await sim.complete_batch(quantity=120)
                await wait_until(lambda: tracker.completed == 1, what="batch completed")
                lot = str(tracker.recent[0]["lot"])
                code = str(tracker.recent[0]["trace_code"])
                shipped = PALLET_OUT
                if packing:
                    for read in (b"PACK:NEW", code.encode(), b"PACK:CLOSE"):
                        assert await scan(ptys["pack-1"], read) == ACK, read
                    station = dock_out.packing[0]
                    await wait_until(lambda: station.last_closed is not None, what="packed")
                    assert station.last_closed is not None
                    shipped = str(station.last_closed["sscc"])
                before = dock_out.outbox.last_seq
                ptys["dock-out"].write(pallet_label(shipped, PRODUCT, lot, 120) + b"\r\n")
                await wait_until(lambda: dock_out.outbox.last_seq > before, what="shipped")
                for agent in agents.values():
                    await wait_until(
                        lambda a=agent: a.outbox.cursor("plant-store") == a.outbox.last_seq,  # type: ignore[misc]
                        what="every node's events stored",
                    )
                yield ThreeNodes(agents, lot, shipped, code)
    finally:
        for p in ptys.values():
            p.unplug()
