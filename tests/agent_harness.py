"""Running a whole agent in tests: config files, in-process agents, and agents as processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from support import wait_until

from agent.config import load_config
from agent.runtime.agent import Agent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from support import MqttBroker, Pty


def write_config(
    tmp_path: Path,
    broker: MqttBroker,
    scanners: dict[str, tuple[str, Pty]],
    *,
    extra: str = "",
    store: str = "",
) -> Path:
    """A config file: the broker as the one destination, `scanners` as id → (role, pty)."""
    lines = [
        "[agent]",
        'site = "plant-a"',
        'node = "line-3"',
        f'data_dir = "{tmp_path / "data"}"',
        "[store]",
        store,
        "[status]",
        'listen = "127.0.0.1:0"',
        "[[destinations]]",
        'name = "plant-broker"',
        'kind = "mqtt"',
        f'url = "{broker.url}"',
    ]
    for ident, (role, pty) in scanners.items():
        lines += [
            "[[scanners]]",
            f'id = "{ident}"',
            f'role = "{role}"',
            f'port = "{pty.link}"',
            'good_read = "\\u0006"',
            'nak = "\\u0015"',
            "dedup_ms = 0",
        ]
    path = tmp_path / "lineside.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


@contextlib.asynccontextmanager
async def running_agent(config_file: Path) -> AsyncIterator[Agent]:
    """An agent running in this event loop until the block ends (then stopped cleanly)."""
    agent = Agent(load_config(config_file))
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(agent.run(stop, ready=ready.set), name="test-agent")
    try:
        async with asyncio.timeout(20):
            waiter = asyncio.create_task(ready.wait())
            done, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                waiter.cancel()
                await task  # raises what made it fail
            # pyserial flushes a port's input when it opens it: scans before that are gone.
            await wait_until(
                lambda: all(s.health.connected for s in agent.scanners), what="scanners open"
            )
        yield agent
    finally:
        stop.set()
        async with asyncio.timeout(20):
            await task


# The agent's CLI, with stack dumps on SIGUSR1 for diagnosing a stop that hangs.
_BOOT = (
    "import faulthandler, signal, sys; faulthandler.register(signal.SIGUSR1, all_threads=True); "
    "from agent.cli.main import main; sys.exit(main(sys.argv[1:]))"
)


@dataclass
class AgentProcess:
    """`lineside run` as a child process, which a test may SIGKILL."""

    config_file: Path
    log_file: Path
    process: subprocess.Popen[bytes] | None = None
    nofile: int | None = None  # RLIMIT_NOFILE of the process (a service gets 1024 by default)

    def start(self) -> None:
        """Start the agent process."""
        log = self.log_file.open("ab")
        nofile = self.nofile

        def limit_files() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, "run", "-c", str(self.config_file)],
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=limit_files,  # noqa: PLW1509 (only setrlimit, before exec)
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind, as a crash or power cut."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def terminate(self, timeout: float = 20) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code.

        If it does not exit in time, its stacks are dumped into the log (SIGUSR1) and the
        test fails with them.
        """
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGUSR1)
            time.sleep(1)
            self.kill()
            raise AssertionError(f"agent did not stop on SIGTERM:\n{self.log()[-6000:]}") from None
        self.process = None
        return code

    def log(self) -> str:
        """What the agent logged so far."""
        return self.log_file.read_text(errors="replace")
