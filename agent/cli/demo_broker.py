"""The demo's MQTT broker: mosquitto on a free loopback port when installed, else amqtt.

Used by `lineside demo` (one agent or the plant) and by `lineside bench` (which insists on
mosquitto).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def free_port() -> int:
    """A loopback port nothing listens on now."""
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
    port = free_port()
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
