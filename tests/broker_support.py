"""Brokers that scale, started by the tests themselves: NATS (JetStream + MQTT) and RabbitMQ.

Each runs as a process of the test's own, in a temporary directory, on free loopback ports
(never the machine's own services on 4222, 5672, 1883, 4369), and can be stopped, killed with
SIGKILL and started again on the same ports and storage:

- `NatsBroker`: ``nats-server`` with JetStream (file storage in the directory) and its MQTT
  listener; MQTT 3.1.1 only.
- `RabbitBroker`: a RabbitMQ node with the MQTT plugin: its own node name, AMQP, distribution and
  epmd ports (an epmd of its own, so none is left behind), enabled-plugins file, config, data
  and log directories, and HOME (the Erlang cookie) in the directory. RabbitMQ 3.10 (Debian 12)
  speaks MQTT 3.1.1 only. Booting takes 10-30 s: share one node per test module.

`make test` installs both (packaging/system-deps.sh); where one is missing its tests are skipped
with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from support import end_process, free_port, kill_process

NATS_MISSING = "nats-server is not installed (make test installs it: apt-get install nats-server)"
RABBITMQ_MISSING = (
    "rabbitmq-server is not installed (make test installs it: apt-get install rabbitmq-server)"
)
# Debian's /usr/sbin/rabbitmq-server switches to the rabbitmq user (and its data directory) when
# run as root; the script it calls runs a node where the environment says.
RABBITMQ_SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmq-server"
RABBITMQ_BOOT_S = 90.0


def nats_binary() -> str | None:
    """The nats-server executable, if installed (Debian puts it in /usr/sbin)."""
    return shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )


def rabbitmq_installed() -> bool:
    """Whether a RabbitMQ server (and the epmd it needs) is installed."""
    return Path(RABBITMQ_SCRIPT).exists() and _epmd() is not None


def _epmd() -> str | None:
    erts = next(iter(sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd"))), None)
    return shutil.which("epmd") or (str(erts) if erts else None)


def _wait_listening(
    host: str, port: int, process: subprocess.Popen[bytes], within: float, log: Path
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text(errors="replace")[-4000:] if log.exists() else ""
            msg = f"the broker exited at start (code {process.returncode}):\n{text}"
            raise RuntimeError(msg)
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.05)
    msg = f"the broker did not listen on {host}:{port} within {within:g} s"
    raise RuntimeError(msg)


@dataclass
class NatsBroker:
    """nats-server with JetStream and its MQTT listener on free loopback ports."""

    workdir: Path
    port: int = field(default_factory=free_port)  # MQTT
    client_port: int = field(default_factory=free_port)  # NATS clients (unused by the tests)
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The MQTT listener as a Lineside destination url."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        """The server's log file."""
        return self.workdir / "nats.log"

    def start(self) -> None:
        """Start the server (on the same ports and storage as before) and wait for MQTT."""
        if self.process is not None:
            return
        binary = nats_binary()
        if binary is None:
            raise RuntimeError(NATS_MISSING)
        conf = self.workdir / "nats.conf"
        conf.write_text(
            f"listen: {self.host}:{self.client_port}\n"
            "server_name: lineside_test\n"  # the MQTT listener needs a server name
            f'jetstream {{ store_dir: "{self.workdir / "jetstream"}" }}\n'
            f"mqtt {{ listen: {self.host}:{self.port} }}\n"
        )
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)
        try:
            _wait_listening(self.host, self.port, self.process, 20, self.log)
        except RuntimeError:
            self.kill()
            raise

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wait for it."""
        if self.process is not None:
            end_process(self.process, grace_s=10)
            self.process = None

    def kill(self) -> None:
        """Kill the server at once, as a crash would."""
        if self.process is not None:
            kill_process(self.process)
            self.process = None


@dataclass
class RabbitBroker:
    """A RabbitMQ node of the test's own with the MQTT plugin, on free loopback ports."""

    workdir: Path
    port: int = field(default_factory=free_port)  # MQTT
    amqp_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    epmd_port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None
    epmd: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The MQTT listener as a Lineside destination url."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def node(self) -> str:
        """The Erlang node name: unique, so it never meets the machine's own node."""
        return f"lineside-test-{self.amqp_port}@localhost"

    @property
    def log(self) -> Path:
        """The node's log file."""
        return self.workdir / "log" / "node.log"

    def _environment(self) -> dict[str, str]:
        d = self.workdir
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(d),  # the Erlang cookie is made there
            ERL_EPMD_PORT=str(self.epmd_port),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS=self.host,
            RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONFIG_FILE=str(d / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(d / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(d / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(d / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(d / "mnesia"),
            RABBITMQ_LOG_BASE=str(d / "log"),
            RABBITMQ_LOGS=str(self.log),
            RABBITMQ_PID_FILE=str(d / "rabbitmq.pid"),
            RABBITMQ_PLUGINS_EXPAND_DIR=str(d / "plugins-expand"),
            RABBITMQ_FEATURE_FLAGS_FILE=str(d / "feature_flags"),
            RABBITMQ_QUORUM_DIR=str(d / "quorum"),
            RABBITMQ_STREAM_DIR=str(d / "stream"),
        )
        return env

    def start(self) -> None:
        """Start the node (same ports, same data) and wait until MQTT listens."""
        if self.process is not None:
            return
        epmd = _epmd()
        if not rabbitmq_installed() or epmd is None:
            raise RuntimeError(RABBITMQ_MISSING)
        d = self.workdir
        (d / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (d / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {self.host}:{self.amqp_port}\n"
            f"mqtt.listeners.tcp.default = {self.host}:{self.port}\n"
            "mqtt.allow_anonymous = true\n"
            "loopback_users = none\n"
        )
        if self.epmd is None:  # our own, in the foreground: the node would daemonise one
            self.epmd = subprocess.Popen(
                [epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        with (d / "start.log").open("ab") as log:
            self.process = subprocess.Popen(
                [RABBITMQ_SCRIPT],
                env=self._environment(),
                cwd=d,
                stdout=log,
                stderr=log,
                start_new_session=True,  # the script, beam.smp and its helpers: one group
            )
        try:
            _wait_listening(self.host, self.port, self.process, RABBITMQ_BOOT_S, d / "start.log")
        except RuntimeError:
            self.kill()
            raise

    def _signal(self, sig: signal.Signals, wait_s: float) -> bool:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(wait_s)
        except subprocess.TimeoutExpired:
            return False
        # the group's other members (beam.smp under the script) end with it
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Stop the node (SIGTERM to its process group, then SIGKILL) and wait for it."""
        if self.process is None:
            return
        if not self._signal(signal.SIGTERM, 30):
            self._signal(signal.SIGKILL, 10)
        self.process = None

    def kill(self) -> None:
        """Kill the node at once (SIGKILL to the whole group), as a crash would."""
        if self.process is None:
            return
        self._signal(signal.SIGKILL, 10)
        self.process = None

    def remove(self) -> None:
        """Stop the node and its epmd."""
        self.stop()
        if self.epmd is not None:
            self.epmd.kill()
            self.epmd.wait(5)
            self.epmd = None
