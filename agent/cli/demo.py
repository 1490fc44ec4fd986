"""`lineside demo --single`: a complete simulated line on one agent, no hardware.

The filling-line PLC on the protocol `--plc` names (`agent.cli.demo_plcs`: Modbus by default, or
OPC UA, S7, EtherNet/IP, each on its library's own server), three virtual scanners on
pseudo-terminal pairs (inbound dock, line, outbound dock) fed with realistic GS1 data, a second
inbound scanner that is a USB keyboard-wedge one (`dock-in-hid`: a FIFO typed into as a US
keyboard, GS as Ctrl+]; left out where the directory cannot hold a FIFO), a broker (`mosquitto`
when installed, else the embedded pure-Python amqtt), and the agent with its status page. The MES
side is played too: a work order is sent over MQTT at start. Ctrl-C stops everything cleanly. The
broker is `demo_broker`'s, the scanners and their data `demo_scans`', the printer and packing
station `demo_packing`'s; `lineside demo` without `--single` runs the three-node plant of
`demo_plant`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING

import aiomqtt

from agent.cli.demo_broker import DemoBroker, demo_broker
from agent.cli.demo_packing import PACKING_SCANNER, DockPacking, demo_printer, packing_config
from agent.cli.demo_plcs import demo_plc
from agent.cli.demo_scans import (
    PRODUCT_GTIN,
    ScanFeeder,
    demo_folder,
    feed,
    unplug,
    virtual_scanners,
)
from agent.config import load_config
from agent.runtime.agent import Agent
from agent.runtime.destinations import node_topics

if TYPE_CHECKING:
    from pathlib import Path

    from sync.topics import Topics


def demo_config(
    workdir: Path,
    broker: DemoBroker,
    plc_section: str,
    listen: str,
    *,
    hid: bool = False,
    printer_url: str = "tcp://127.0.0.1:9100",
) -> str:
    """The demo agent's config file text (with the HID scanner `dock-in-hid` if `hid`)."""
    dev = workdir / "dev"
    hid_scanner = f"""
[[scanners]]
id = "dock-in-hid"
role = "inbound"
hid = "{dev / "dock-in-hid"}"
keymap = "us"
"""
    return f"""# Written by `lineside demo`.
[agent]
site = "demo-plant"
node = "line-1"
data_dir = "{workdir / "data"}"

[status]
listen = "{listen}"
admin_password_file = "{workdir / "admin.pw"}"

[line]
gtin = "{PRODUCT_GTIN}"

[[scanners]]
id = "dock-in"
role = "inbound"
port = "{dev / "dock-in"}"

[[scanners]]
id = "line-feed"
role = "line"
port = "{dev / "line-feed"}"

[[scanners]]
id = "dock-out"
role = "outbound"
port = "{dev / "dock-out"}"

{hid_scanner if hid else ""}
{plc_section}

[[destinations]]
name = "plant-broker"
kind = "mqtt"
url = "{broker.url}"
protocol = "{broker.protocol}"
{packing_config(dev, printer_url)}"""


async def _send_work_order(broker: DemoBroker, topics: Topics) -> None:
    """The MES's part: one work order for the running product."""
    body = {"work_order": "WO-DEMO-1", "gtin": PRODUCT_GTIN, "planned_qty": 1200}
    with contextlib.suppress(aiomqtt.MqttError):
        async with aiomqtt.Client(broker.host, broker.port) as client:
            await client.publish(topics.command("work-order"), json.dumps(body).encode(), qos=1)


def _summary(agent: Agent) -> str:
    scans = len(agent.state.recent_scans)
    batches = sum(tracker.completed for tracker in agent.batch_lines)
    backlog = sum(p.health.backlog for p in agent.publishers)
    last = next((str(b["trace_code"]) for t in agent.batch_lines for b in t.recent), "-")
    return (
        f"seq {agent.outbox.last_seq:6d} | recent scans {scans:3d} | batches {batches:3d} | "
        f"backlog {backlog:4d} | last code {last}"
    )


async def run_demo(
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
    """Run the simulated line until `stop` is set."""
    workdir = await demo_folder(workdir)
    password = workdir / "admin.pw"
    scanners = virtual_scanners(workdir / "dev", (PACKING_SCANNER,))
    hid = scanners.get("dock-in-hid")
    units_per_s = 4.0
    async with (
        demo_broker(workdir, broker_kind) as broker,
        demo_plc(
            plc, batch_units=max(1, int(units_per_s * batch_seconds)), units_per_s=units_per_s
        ) as line_plc,
        demo_printer(workdir) as printer,
    ):
        config_file = workdir / "lineside.toml"
        text = demo_config(
            workdir, broker, line_plc.section, listen, hid=hid is not None, printer_url=printer.url
        )
        config_file.write_text(text)
        agent = Agent(load_config(config_file))
        agent_stop = asyncio.Event()
        ready = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            running = group.create_task(agent.run(agent_stop, ready=ready.set), name="agent")
            await ready.wait()
            async with asyncio.timeout(10):
                seen = agent.state.version
                while agent.status_url is None:
                    seen = await agent.state.wait_changed(seen)
            command_broker = agent.config.command_broker
            assert command_broker is not None  # the demo's config has its broker
            topics = node_topics(agent.config, command_broker)
            admin = password.read_text().strip()
            watch = f"mosquitto_sub -h {broker.host} -p {broker.port} -t '{topics.everything}' -v"
            print(  # noqa: T201 (the demo's output)
                f"Lineside demo running.\n"
                f"  status page:  {agent.status_url}   (admin password: {admin})\n"
                f"  broker:       {broker.url}  ({broker.kind})\n"
                f"  watch events: {watch}\n"
                f"  PLC:          {line_plc.where}\n"
                f"  printer:      {printer.url}  (labels saved in {workdir / 'labels'})\n"
                + (f"  HID scanner:  dock-in-hid, typing into {hid.link}\n" if hid else "")
                + f"  config:       {config_file}\n"
                "Ctrl-C stops.",
                flush=True,
            )
            await _send_work_order(broker, topics)
            feeder = ScanFeeder(
                agent,
                scanners,
                seed=1,
                shipments=DockPacking(agent, scanners[PACKING_SCANNER]).next_shipment,
            )
            await feed(stop, feeder, [running], lambda: _summary(agent), rate=rate, quiet=quiet)
            agent_stop.set()
        print("Lineside demo stopped.", flush=True)  # noqa: T201
    unplug(scanners)
