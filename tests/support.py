"""Real test peers: a mosquitto of our own, an MQTT subscriber, pseudo-terminal serial ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import aiomqtt
import pytest

if TYPE_CHECKING:
    from collections.abc import Callable


def end_process(process: subprocess.Popen[bytes], *, grace_s: float) -> None:
    """SIGTERM, then SIGKILL after `grace_s`; waits until the process is gone."""
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        kill_process(process)


def kill_process(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL, as a crash or a power loss would; waits until the process is gone."""
    process.kill()
    process.wait(5)


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str:
    """The mosquitto executable (Debian puts it in /usr/sbin, often not on PATH)."""
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None:
        msg = "mosquitto is not installed (make test installs it: apt-get install mosquitto)"
        raise RuntimeError(msg)
    return found


# Started as root, mosquitto drops to the "mosquitto" user before it reads ACL and password
# files, and cannot read them in pytest's private tmp_path: a broker config that names such
# files starts with this to keep it root in that case.
STAY_ROOT = "user root\n" if os.geteuid() == 0 else ""


class MqttBroker(Protocol):
    """Any broker a test started: mosquitto here, NATS and RabbitMQ in `broker_support`."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """The broker's address as a Lineside destination url."""
        ...


@dataclass
class Broker:
    """A mosquitto process on a free loopback port, which a test may stop and start again."""

    workdir: Path
    port: int = field(default_factory=free_port)
    extra_config: str = ""
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker's address as a Lineside destination url."""
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.process is not None:
            return
        conf = self.workdir / f"mosquitto-{self.port}.conf"
        listener = "" if "listener" in self.extra_config else f"listener {self.port} {self.host}\n"
        conf.write_text(
            f"{listener}allow_anonymous true\npersistence false\n"
            # A subscriber that lags (a loaded test machine) must not lose QoS 1 messages to
            # the broker's default queue limit of 1000: the tests count every message. (Not 0,
            # "unlimited": mosquitto 2.0.11 then drops a client after an ACL-denied publish.)
            "max_queued_messages 10000000\n"
            f"log_dest file {self.workdir / 'mosquitto.log'}\n{self.extra_config}\n"
        )
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.workdir / "mosquitto.log").read_text(errors="replace")
                self.process = None
                raise RuntimeError(f"mosquitto exited at start:\n{log}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.2),
            ):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("mosquitto did not start listening within 10 s")

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and wait for it."""
        if self.process is not None:
            end_process(self.process, grace_s=5)
            self.process = None

    def kill(self) -> None:
        """Kill the broker at once, as a crash or power loss would."""
        if self.process is not None:
            kill_process(self.process)
            self.process = None


@dataclass
class Collected:
    """Messages seen by a `Subscriber`, in arrival order."""

    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    subscriptions: int = 0
    """How often the subscriber (re)subscribed: once per connection."""

    def payloads(self, topic_filter: Callable[[str], bool] | None = None) -> list[dict[str, Any]]:
        """The JSON payloads of the collected messages whose topic passes the filter."""
        return [
            json.loads(p)
            for t, p, _ in self.messages
            if (topic_filter is None or topic_filter(t)) and p
        ]

    async def wait_for(self, predicate: Callable[[Collected], bool], timeout: float = 20) -> None:  # noqa: ASYNC109
        """Wait until `predicate(self)` holds, failing the test after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def subscriber(broker: MqttBroker, topic: str = "#"):  # type: ignore[no-untyped-def]  # noqa: ANN201
    """An independent MQTT client that collects every message on `topic` while the block runs.

    It reconnects by itself when the broker is stopped and started again (persistent session,
    QoS 1), so a test can count what arrives across a broker outage.
    """
    got = Collected()
    ready = asyncio.Event()

    async def run() -> None:
        ident = f"test-sub-{free_port()}"
        while True:
            try:
                async with aiomqtt.Client(
                    broker.host, broker.port, identifier=ident, clean_session=False
                ) as client:
                    await client.subscribe(topic, qos=1)
                    got.subscriptions += 1
                    got.changed.set()
                    ready.set()
                    async for message in client.messages:
                        payload = message.payload
                        data = payload if isinstance(payload, bytes) else str(payload).encode()
                        got.messages.append((str(message.topic), data, bool(message.retain)))
                        got.changed.set()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    task = asyncio.create_task(run(), name="test-subscriber")
    try:
        async with asyncio.timeout(10):
            await ready.wait()
        yield got
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class Pty:
    """A pseudo-terminal pair standing in for a serial scanner.

    The agent opens `link` (a symlink, like /dev/serial/by-id/...); the test writes scans on the
    controller side. `unplug()` closes the pair; `plug()` makes a new pair behind the same link.
    """

    link: Path
    controller: int = -1
    _device: int = -1

    def plug(self) -> None:
        """Make a new pty pair and point the link at its device side."""
        controller, device = os.openpty()
        tty.setraw(controller)
        tty.setraw(device)
        name = os.ttyname(device)
        tmp = self.link.with_suffix(".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(name)
        tmp.replace(self.link)
        self.controller = controller
        self._device = device

    def unplug(self) -> None:
        """Remove the link and close both ends, as pulling the USB cable would.

        udev removes a /dev/serial/by-id link with its device; here that also keeps the agent's
        retries from opening whatever pty (another test's, another suite's) gets this pty's
        number next.
        """
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        for fd in (self.controller, self._device):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.controller = self._device = -1

    def write(self, data: bytes) -> None:
        """Send bytes as the scanner would."""
        os.write(self.controller, data)

    def read_available(self) -> bytes:
        """What the agent wrote back (good-read/NAK replies), without blocking."""
        os.set_blocking(self.controller, False)
        try:
            return os.read(self.controller, 4096)
        except BlockingIOError:
            return b""
        finally:
            os.set_blocking(self.controller, True)


async def wait_until(predicate: Callable[[], bool], timeout: float = 20, what: str = "") -> None:  # noqa: ASYNC109
    """Wait for a condition that has no event to wait on (another process's state)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(0.02)


CHROMIUM = "/usr/bin/chromium"  # Debian's; a browser is never downloaded
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",  # this machine's network is closed: no background calls
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# Marks of a test that drives Chromium: skipped, with the reason, where Debian's is missing.
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed (we never download one)"
    ),
]


def csp_violations(console: list[str]) -> list[str]:
    """The console lines in which Chromium reports a Content-Security-Policy refusal."""
    return [m for m in console if "Content Security Policy" in m or "Refused to" in m]


@dataclass
class PageWatch:
    """What a page said while a test drove it: console lines and uncaught errors."""

    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def chromium_page(  # type: ignore[no-untyped-def]  # noqa: ANN201
    url: str, *, locale: str = "en-US", width: int = 1280, height: int = 800
):
    """Debian's Chromium (through Playwright) showing `url`; yields (page, PageWatch)."""
    from playwright.async_api import async_playwright  # noqa: PLC0415 (browser tests only)

    watch = PageWatch()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(
                locale=locale, viewport={"width": width, "height": height}
            )
            page = await context.new_page()
            page.on("console", lambda m: watch.console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: watch.page_errors.append(str(e)))
            await page.goto(url)
            yield page, watch
            await context.close()
        finally:
            await browser.close()
