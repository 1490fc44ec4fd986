"""`lineside demo`: a complete simulated line on this machine, no hardware.

A filling-line PLC simulator (pymodbus's own server), three virtual scanners on pseudo-terminal
pairs (inbound dock, line, outbound dock) fed with realistic GS1 data, a broker (`mosquitto` when
installed, else the embedded pure-Python amqtt), and the agent with its status page. The MES
side is played too: a work order is sent over MQTT at start. Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tty
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import aiomqtt
from biip.checksums import gs1_standard_check_digit

from agent.config import load_config
from agent.runtime import Agent
from drivers.plc_sim import FillingLineSimulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

PRODUCT_GTIN = "09501101530003"
COMPANY = "950110153"  # the GS1 company prefix of the demo's products and pallets
MATERIALS = {"sugar": "0950110153001", "bottle": "0950110153002", "cap": "0950110153003"}
GS = "\x1d"
# How the simulated line's scans are spread: received at the dock, consumed at the line,
# shipped at the outbound dock, and the rest smudged labels.
RECEIVE_UP_TO = 0.3
CONSUME_UP_TO = 0.75
SHIP_UP_TO = 0.95


def _with_check_digit(digits: str) -> str:
    return digits + str(gs1_standard_check_digit(digits))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DemoBroker:
    """Where the demo's broker listens."""

    host: str
    port: int
    protocol: str
    kind: str

    @property
    def url(self) -> str:
        """As a destination url."""
        return f"mqtt://{self.host}:{self.port}"


def _mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found is None and Path("/usr/sbin/mosquitto").exists():
        found = "/usr/sbin/mosquitto"
    return found


@contextlib.asynccontextmanager
async def demo_broker(workdir: Path, kind: str = "auto") -> AsyncIterator[DemoBroker]:
    """Start mosquitto on a free loopback port if installed (or `kind="mosquitto"`), else amqtt."""
    port = _free_port()
    binary = _mosquitto()
    if kind == "mosquitto" or (kind == "auto" and binary is not None):
        if binary is None:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        # Its own session: Ctrl-C signals the terminal's whole process group, and the broker
        # must outlive the agent's shutdown (the retained offline state is published last).
        process = await asyncio.create_subprocess_exec(
            binary,
            "-c",
            str(conf),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(10):
                while True:  # another process: no event to wait on, so try to connect
                    with contextlib.suppress(OSError):
                        _, writer = await asyncio.open_connection("127.0.0.1", port)
                        writer.close()
                        await writer.wait_closed()
                        break
                    if process.returncode is not None:
                        raise RuntimeError("mosquitto exited at start")
                    await asyncio.sleep(0.05)
            yield DemoBroker("127.0.0.1", port, "5", "mosquitto")
        finally:
            if process.returncode is None:
                process.terminate()
            async with asyncio.timeout(10):
                await process.wait()
        return
    try:
        from amqtt.broker import Broker  # type: ignore[import-untyped]  # noqa: PLC0415 (only without mosquitto)
    except ImportError as exc:
        msg = "no broker: install mosquitto (apt-get install mosquitto) or pip install amqtt"
        raise RuntimeError(msg) from exc
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await broker.start()
    try:
        yield DemoBroker("127.0.0.1", port, "3.1.1", "amqtt (embedded)")
    finally:
        await broker.shutdown()


class VirtualScanner:
    """A pseudo-terminal pair: the agent opens `link`; the demo types scans on the other end."""

    def __init__(self, link: Path) -> None:
        controller, device = os.openpty()
        tty.setraw(controller)
        tty.setraw(device)
        self.controller, self.device = controller, device
        link.unlink(missing_ok=True)
        link.symlink_to(os.ttyname(device))
        self.link = link

    def scan(self, text: str) -> None:
        """Type one scan, CR LF terminated; replies from the agent are drained and ignored."""
        os.write(self.controller, text.encode() + b"\r\n")
        os.set_blocking(self.controller, False)
        with contextlib.suppress(BlockingIOError):
            os.read(self.controller, 4096)
        os.set_blocking(self.controller, True)

    def close(self) -> None:
        """Unplug."""
        for fd in (self.controller, self.device):
            with contextlib.suppress(OSError):
                os.close(fd)


def demo_config(workdir: Path, broker: DemoBroker, plc_port: int, listen: str) -> str:
    """The demo agent's config file text."""
    dev = workdir / "dev"
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

[[plcs]]
id = "filler"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {plc_port}
poll_ms = 100

[plcs.batch]
trigger = "coil:0"
quantity = "holding:100:uint32"
ack = "coil:1"
write_code_to = "holding:200:string:64"

[plcs.params]
fill_temp_c = "holding:110:float32"
line_speed = "holding:112:uint16"

[[destinations]]
name = "plant-broker"
kind = "mqtt"
url = "{broker.url}"
protocol = "{broker.protocol}"
"""


class ScanFeeder:
    """Realistic scans: material lots received and consumed, pallets and batch codes shipped."""

    def __init__(self, agent: Agent, scanners: dict[str, VirtualScanner], seed: int) -> None:
        self._agent = agent
        self._scanners = scanners
        self._random = random.Random(seed)  # noqa: S311 (demo data)
        self._received: list[str] = []
        self._pallet = 0
        self._lot_no = 0
        self._shipped: set[str] = set()

    def _material_label(self) -> str:
        name = self._random.choice(list(MATERIALS))
        gtin = _with_check_digit(MATERIALS[name])
        self._lot_no += 1
        expiry = (datetime.now(UTC) + timedelta(days=self._random.randint(60, 400))).strftime(
            "%y%m%d"
        )
        return f"]d201{gtin}17{expiry}10M{self._lot_no:05d}{GS}21{self._random.randint(1, 99999)}"

    def step(self) -> None:
        """One scan somewhere on the line."""
        roll = self._random.random()
        if roll < RECEIVE_UP_TO or not self._received:
            label = self._material_label()
            self._received.append(label)
            self._scanners["dock-in"].scan(label)
        elif roll < CONSUME_UP_TO:
            self._scanners["line-feed"].scan(self._random.choice(self._received[-6:]))
        elif roll < SHIP_UP_TO and (pallet := self._next_shipment()) is not None:
            self._scanners["dock-out"].scan(pallet)
        elif roll < SHIP_UP_TO:
            self._scanners["line-feed"].scan(self._random.choice(self._received[-6:]))
        else:  # a smudged label: the check digit does not match
            self._scanners["dock-in"].scan("]C10109501101530004")

    def _next_shipment(self) -> str | None:
        """The pallet label of the oldest completed batch not shipped yet (each ships once).

        SSCC (00), the GTIN of the contents (02), their count (37) and lot (10): what the
        agent's reconciliation and forward trace read.
        """
        for line in self._agent.lines:
            for batch in reversed(line.tracker.recent):
                code = str(batch["trace_code"])
                if code in self._shipped:
                    continue
                self._shipped.add(code)
                gtin = code.split("(01)")[1][:14]
                self._pallet += 1
                sscc = _with_check_digit(f"0{COMPANY}{self._pallet:07d}")
                count = batch.get("quantity") or 1
                return f"]C100{sscc}02{gtin}37{count}{GS}10{batch['lot']}"
        return None


async def _send_work_order(broker: DemoBroker, node_base: str) -> None:
    """The MES's part: one work order for the running product."""
    body = {"work_order": "WO-DEMO-1", "gtin": PRODUCT_GTIN, "planned_qty": 1200}
    with contextlib.suppress(aiomqtt.MqttError):
        async with aiomqtt.Client(broker.host, broker.port) as client:
            await client.publish(f"{node_base}/cmd/work-order", json.dumps(body).encode(), qos=1)


def _summary(agent: Agent) -> str:
    scans = len(agent.state.recent_scans)
    batches = sum(line.tracker.completed for line in agent.lines)
    backlog = sum(p.health.backlog for p in agent.publishers)
    last = next((str(b["trace_code"]) for line in agent.lines for b in line.tracker.recent), "-")
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
) -> None:
    """Run the simulated line until `stop` is set."""
    workdir = await asyncio.to_thread(workdir.resolve)
    (workdir / "dev").mkdir(parents=True, exist_ok=True)
    password = workdir / "admin.pw"
    if not password.exists():
        password.write_text("demo\n")
        password.chmod(0o600)
    scanners = {
        name: VirtualScanner(workdir / "dev" / name)
        for name in ("dock-in", "line-feed", "dock-out")
    }
    units_per_s = 4.0
    async with (
        demo_broker(workdir, broker_kind) as broker,
        FillingLineSimulator(
            port=0, batch_units=max(1, int(units_per_s * batch_seconds)), units_per_s=units_per_s
        ) as plc,
    ):
        config_file = workdir / "lineside.toml"
        config_file.write_text(demo_config(workdir, broker, plc.port, listen))
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
            base = f"lineside/v1/{agent.config.agent.site}/{agent.config.agent.node}"
            admin = password.read_text().strip()
            watch = f"mosquitto_sub -h {broker.host} -p {broker.port} -t '{base}/#' -v"
            print(  # noqa: T201 (the demo's output)
                f"Lineside demo running.\n"
                f"  status page:  {agent.status_url}   (admin password: {admin})\n"
                f"  broker:       {broker.url}  ({broker.kind})\n"
                f"  watch events: {watch}\n"
                f"  PLC (Modbus): 127.0.0.1:{plc.port}\n"
                f"  config:       {config_file}\n"
                f"Ctrl-C stops.",
                flush=True,
            )
            await _send_work_order(broker, base)
            feeder = ScanFeeder(agent, scanners, seed=1)
            ticks = 0
            while not stop.is_set() and not running.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0 / rate)
                if stop.is_set():
                    break
                feeder.step()
                ticks += 1
                if not quiet and ticks % max(1, int(rate)) == 0:
                    sys.stdout.write("\r" + _summary(agent) + " ")
                    sys.stdout.flush()
            agent_stop.set()
        if not quiet:
            sys.stdout.write("\n")
        print("Lineside demo stopped.", flush=True)  # noqa: T201
    for scanner in scanners.values():
        scanner.close()
