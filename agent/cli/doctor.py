"""`lineside doctor -c FILE`: checks what the agent will need, prints ok / warn / fail with hints.

Checks, in order: the data directory and its free disk space against `max_backlog_mb`; each
serial scanner's port (exists, readable and writable by this user) or TCP address, each HID
(keyboard-wedge) scanner's input device (exists, readable, can be grabbed: opened, grabbed and
let go again, so a running agent that holds it shows as "grabbed"); each PLC, whatever its
protocol (connect, read every configured address once, and check that each batch signal holds
what its role needs, as the PLC reports it); each destination (MQTT: connect and authenticate with a
client id of its own, so the running agent's session and retained state are left alone; HTTP:
an OPTIONS request with the configured TLS and credentials; file: the directory is writable;
PostgreSQL: log in with the password file and TLS settings, and find `lineside.events` with
INSERT granted, as the sink does when it connects);
and whether the system clock is synchronised.

Exit code, within the CLI contract (0 ok, 2 bad config, 1 anything else): 0 when nothing
failed (warnings are printed in the table and the summary line), 1 when a check failed, 2 for a
bad config (raised before any check runs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agent.cli.doctor_mqtt import check_mqtt
from agent.cli.findings import CHECK_TIMEOUT_S, Finding, Status
from agent.config.plc_links import PROTOCOL_NAMES, open_plc
from agent.config.plcs import signal_problem
from agent.config.scanners import HidScannerConfig
from agent.runtime.clock import clock_synchronised
from agent.runtime.destinations import node_topics
from drivers.base import DeviceUnavailable, DriverError
from drivers.scanners.hid_device import DeviceGrabbed, NotAnInputDevice, probe_input
from sync.base import SyncError
from sync.files import FileDestinationConfig
from sync.http import HttpDestinationConfig, HttpSink
from sync.mqtt_config import MqttDestinationConfig
from sync.postgres import PostgresSink
from sync.postgres_config import PostgresDestinationConfig

if TYPE_CHECKING:
    import argparse
    from collections.abc import Awaitable, Callable

    from agent.config import Config
    from agent.config.plcs import AnyPlcConfig
    from agent.config.scanners import ScannerConfig
    from sync.base import DestinationConfig

EXIT_FAILED = 1
EXIT_WARNINGS = 0  # warnings are shown, not fatal: the agent can run
__all__ = ["EXIT_FAILED", "EXIT_WARNINGS", "Finding", "Status", "doctor_command", "run_checks"]


def _ok(check: str, detail: str) -> Finding:
    return Finding(check, Status.OK, detail)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def check_data_dir(config: Config) -> list[Finding]:
    """The data directory is writable and the disk has room for the configured backlog."""
    data_dir = config.agent.data_dir
    where = _nearest_existing(data_dir)
    findings: list[Finding] = []
    if not os.access(where, os.W_OK | os.X_OK):
        findings.append(
            Finding(
                "data dir",
                Status.FAIL,
                f"{where} is not writable by user {os.getuid()}",
                f"chown the directory to the agent's user (the package makes {data_dir}"
                " owned by lineside); run doctor as that user: sudo -u lineside lineside doctor",
            )
        )
    else:
        findings.append(_ok("data dir", f"{data_dir} writable"))
    free_mb = shutil.disk_usage(where).free // 2**20
    need_mb = config.store.max_backlog_mb + config.store.min_free_mb
    detail = f"{free_mb:,} MB free on {where}; backlog limit {config.store.max_backlog_mb:,} MB"
    if free_mb < config.store.min_free_mb:
        findings.append(
            Finding("disk", Status.FAIL, detail, "free disk space: new events would be refused")
        )
    elif free_mb < need_mb:
        findings.append(
            Finding(
                "disk",
                Status.WARN,
                detail,
                f"the disk fills before the backlog limit: free {need_mb - free_mb:,} MB more"
                " or lower store.max_backlog_mb",
            )
        )
    else:
        findings.append(_ok("disk", detail))
    return findings


async def _tcp(host: str, port: int) -> None:
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def _check_serial_port(name: str, port: Path) -> Finding:
    if not port.exists():
        return Finding(
            name,
            Status.FAIL,
            f"{port} does not exist",
            "plug the scanner in; use a stable name from ls -l /dev/serial/by-id/",
        )
    if not os.access(port, os.R_OK | os.W_OK):
        return Finding(
            name,
            Status.FAIL,
            f"{port} is not readable and writable by user {os.getuid()}",
            "add the user to the dialout group (the package does this for lineside)",
        )
    return _ok(name, f"{port} readable and writable")


def check_hid(scanner: HidScannerConfig) -> Finding:
    """A HID scanner's input device exists, this user may read it, and it can be grabbed."""
    name, path = f"scanner {scanner.id}", scanner.hid
    try:
        device = probe_input(path)
    except DeviceGrabbed:
        return Finding(
            name,
            Status.WARN,
            f"{path} is grabbed by another program — the running agent, if lineside is running",
            "fine while the agent runs (systemctl is-active lineside); else stop the program "
            "holding it (a kiosk app, evtest --grab): only one program can hold a scanner",
        )
    except NotAnInputDevice as exc:
        return Finding(name, Status.FAIL, str(exc), "ls -l /dev/input/by-id/ lists the scanners")
    except DeviceUnavailable as exc:
        hint = "plug the scanner in; use a stable name from ls -l /dev/input/by-id/"
        if isinstance(exc.__cause__, PermissionError):
            hint = (
                "give the agent's user this scanner with a udev rule (the package's "
                "examples/70-lineside-scanner.rules), or the input group (every keyboard)"
            )
        return Finding(name, Status.FAIL, str(exc), hint)
    if device.kind == "fifo":
        return Finding(
            name,
            Status.WARN,
            f"{device}: read without a grab",
            "a FIFO is for tests and the demo; a scanner is a /dev/input/by-id/...-event-kbd",
        )
    return _ok(name, f"{device}: readable, grabbed and let go")


async def check_scanner(scanner: ScannerConfig) -> Finding:
    """A scanner's serial port exists and this user may read and write it (or its TCP port)."""
    name = f"scanner {scanner.id}"
    if isinstance(scanner, HidScannerConfig):
        return check_hid(scanner)
    if scanner.port is not None:
        return _check_serial_port(name, Path(scanner.port))
    url = urlsplit(scanner.url or "")
    if url.scheme == "socket" and url.hostname and url.port:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                await _tcp(url.hostname, url.port)
        except (OSError, TimeoutError) as exc:
            return Finding(
                name,
                Status.FAIL,
                f"{scanner.url}: {exc or 'timed out'}",
                "check the scanner's network adapter: address, port, cabling",
            )
        return _ok(name, f"{scanner.url} accepts connections")
    return Finding(name, Status.WARN, f"{scanner.url}: not checked", "")


SIGNALS = ("trigger", "quantity", "ack", "write_code_to", "batch_id")
PLC_HINTS = {
    "modbus-tcp": "check address/port, unit id and the register map against the PLC program",
    "modbus-rtu": "check serial port, baud rate, parity, unit id and the register map against"
    " the PLC program",
    "opcua": "check the endpoint, security policy, certificates, user and the node ids against"
    " the server's address space",
    "s7": "check host/port, rack/slot, that PUT/GET access is allowed and the DB addresses"
    " against the PLC program (optimized block access off)",
    "enip": "check host/port, slot and the tag names against the Logix program",
}


def _watched(plc: AnyPlcConfig) -> dict[str, Any]:
    watch: dict[str, Any] = {f"params.{k}": v for k, v in plc.params.items()}
    if plc.batch is not None:
        for key in SIGNALS:
            address = getattr(plc.batch, key)
            if address is not None:
                watch[f"batch.{key}"] = address
    return watch


async def check_plc(plc: AnyPlcConfig) -> Finding:
    """Connect, read every configured address once, and check each signal's type."""
    name = f"plc {plc.id}"
    watch = _watched(plc)
    problems = []
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            async with open_plc(plc, watch) as link:
                values = await link.read(watch) if watch else {}
                for key, address in watch.items():
                    role = key.removeprefix("batch.")
                    if key.startswith("batch.") and (
                        problem := signal_problem(role, await link.describe(address))
                    ):
                        problems.append(f"{key} {address} {problem}")
    except (DriverError, TimeoutError) as exc:
        return Finding(name, Status.FAIL, str(exc) or "no answer", PLC_HINTS[plc.protocol])
    if problems:
        return Finding(name, Status.FAIL, "; ".join(problems), "fix [plcs.batch] in the config")
    where = PROTOCOL_NAMES[plc.protocol]
    return _ok(name, f"{where} answered: {len(values)} configured address(es) read")


async def check_http(dest: HttpDestinationConfig) -> Finding:
    """An OPTIONS request with the destination's TLS settings and credentials."""
    name = f"destination {dest.name}"
    try:
        async with HttpSink(dest) as sink:
            probe = await sink.probe()
    except SyncError as exc:
        return Finding(name, Status.FAIL, str(exc), "check the TLS and credential files")
    if probe.status is None:
        return Finding(
            name,
            Status.FAIL,
            f"{dest.url}: {probe.failure}",
            "check url, firewall, ca_file and the server's certificate",
        )
    code = probe.status
    if not probe.authenticated:
        return Finding(
            name,
            Status.FAIL,
            f"{dest.url}: HTTP {code}",
            "the server refused the credentials: check bearer_token_file or username/password",
        )
    if code >= 500:  # noqa: PLR2004
        return Finding(name, Status.WARN, f"{dest.url}: HTTP {code}", "the server has trouble")
    return _ok(name, f"{dest.url}: reachable (HTTP {code} to OPTIONS)")


def check_file(dest: FileDestinationConfig) -> Finding:
    """The drop directory (or the parent it will be created in) is writable."""
    name = f"destination {dest.name}"
    where = _nearest_existing(dest.dir)
    try:
        with tempfile.NamedTemporaryFile(dir=where, prefix=".lineside-doctor-"):
            pass
    except OSError as exc:
        return Finding(
            name,
            Status.FAIL,
            f"{dest.dir}: {exc.strerror or exc}",
            "make the directory writable by the agent's user (a ReadWritePaths= drop-in"
            " under systemd)",
        )
    return _ok(name, f"{dest.dir} writable")


async def check_postgres(dest: PostgresDestinationConfig) -> Finding:
    """Log in as the sink does and find lineside.events writable by the role."""
    name = f"destination {dest.name}"
    try:
        async with PostgresSink(dest):
            pass
    except SyncError as exc:
        reason = str(exc).removeprefix(f"{dest.name}: ")
        hint = "check dsn, password_file, sslmode and that the database runs"
        if "migrate" in reason:
            hint = "run `lineside plant migrate` and grant the statements it prints"
        return Finding(name, Status.FAIL, reason, hint)
    return _ok(name, f"{dest.target}: connected, lineside.events writable")


async def check_destination(config: Config, dest: DestinationConfig) -> Finding:
    """The check that fits the destination's kind."""
    match dest:
        case MqttDestinationConfig():
            return await check_mqtt(dest, node_topics(config, dest))
        case HttpDestinationConfig():
            return await check_http(dest)
        case FileDestinationConfig():
            return check_file(dest)
        case PostgresDestinationConfig():
            return await check_postgres(dest)
    return Finding(f"destination {dest.name}", Status.WARN, "unknown kind: not checked")


def check_clock() -> Finding:
    """The kernel considers the system clock synchronised (NTP)."""
    synced = clock_synchronised()
    if synced:
        return _ok("clock", "synchronised")
    hint = "enable time sync: timedatectl set-ntp true (or configure chrony)"
    if synced is None:
        return Finding("clock", Status.WARN, "cannot tell whether it is synchronised", hint)
    return Finding("clock", Status.WARN, "not synchronised: trace-code dates may be wrong", hint)


async def run_checks(config: Config) -> list[Finding]:
    """Every check, in the order the table shows them."""
    findings = check_data_dir(config)
    steps: list[Callable[[], Awaitable[Finding]]] = []
    steps += [lambda s=s: check_scanner(s) for s in config.scanners]  # type: ignore[misc]
    steps += [lambda p=p: check_plc(p) for p in config.plcs]  # type: ignore[misc]
    steps += [lambda d=d: check_destination(config, d) for d in config.destinations]  # type: ignore[misc]
    findings += await asyncio.gather(*(step() for step in steps))
    findings.append(check_clock())
    return findings


def render(findings: list[Finding]) -> str:
    """The table: one line per check, a hint line under each one that is not ok."""
    width = max(len(f.check) for f in findings)
    lines = []
    for f in findings:
        lines.append(f"{f.status.name.lower():<4}  {f.check:<{width}}  {f.detail}")
        if f.status is not Status.OK and f.hint:
            lines.append(f"{'':<4}  {'':<{width}}  -> {f.hint}")
    return "\n".join(lines)


def exit_code(findings: list[Finding]) -> int:
    """0 when nothing failed (warnings included), 1 when a check failed."""
    worst = max((f.status for f in findings), default=Status.OK)
    return {Status.OK: 0, Status.WARN: EXIT_WARNINGS, Status.FAIL: EXIT_FAILED}[worst]


def doctor_command(config: Config, args: argparse.Namespace) -> int:
    """`lineside doctor -c FILE`."""
    del args  # nothing beyond the config yet
    started = time.monotonic()
    findings = asyncio.run(run_checks(config))
    sys.stdout.write(render(findings) + "\n")
    worst = max(f.status for f in findings)
    sys.stdout.write(
        f"\n{sum(f.status is Status.OK for f in findings)} ok,"
        f" {sum(f.status is Status.WARN for f in findings)} warning(s),"
        f" {sum(f.status is Status.FAIL for f in findings)} failure(s)"
        f" in {time.monotonic() - started:.1f} s: {worst.name.lower()}\n"
    )
    return exit_code(findings)
