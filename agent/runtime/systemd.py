"""systemd's notify protocol (sd_notify) in a few lines: READY, STOPPING, STATUS and WATCHDOG.

Under `Type=notify` systemd passes `NOTIFY_SOCKET` (a unix datagram socket; a leading `@` is
the abstract namespace) and, with `WatchdogSec=`, `WATCHDOG_USEC` (and `WATCHDOG_PID`, the
process meant). Each message is one datagram of `KEY=value` lines. Outside systemd (no
`NOTIFY_SOCKET`) every call is a no-op, so the agent runs the same from a shell or a container.
The watchdog is pinged from a task on the agent's event loop: a loop that stops turning (a
blocking call, a deadlock) stops the pings and systemd restarts the agent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

log = logging.getLogger(__name__)


def _address(env: Mapping[str, str]) -> str | None:
    path = env.get("NOTIFY_SOCKET")
    if not path:
        return None
    if path.startswith("@"):  # abstract namespace
        return "\0" + path[1:]
    return path


def notify(message: str, *, env: Mapping[str, str] | None = None) -> bool:
    """Send `message` (e.g. "READY=1") to systemd; False when not run under a notify unit."""
    address = _address(os.environ if env is None else env)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
    except OSError as exc:
        log.warning("systemd notify %r failed: %s", message, exc)
        return False
    return True


def notify_ready(status: str = "running", *, env: Mapping[str, str] | None = None) -> bool:
    """Tell systemd the agent is up (it then counts the unit as started)."""
    return notify(f"READY=1\nSTATUS={status}", env=env)


def notify_stopping(*, env: Mapping[str, str] | None = None) -> bool:
    """Tell systemd the agent is shutting down on purpose."""
    return notify("STOPPING=1\nSTATUS=stopping", env=env)


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """How often to ping the watchdog (half of `WatchdogSec`), or None when it is off."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC")
    if not usec or _address(env) is None:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (e.g. our parent)
    try:
        seconds = int(usec) / 1_000_000
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not a number", usec)
        return None
    return seconds / 2 if seconds > 0 else None


async def ping_watchdog(interval: float, *, env: Mapping[str, str] | None = None) -> None:
    """Send WATCHDOG=1 every `interval` seconds until cancelled."""
    log.info("systemd watchdog: pinging every %.1f s", interval)
    while True:
        notify("WATCHDOG=1", env=env)
        await asyncio.sleep(interval)
