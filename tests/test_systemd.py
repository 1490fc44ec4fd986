"""systemd's notify protocol against a real unix datagram socket, and the agent speaking it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING

import pytest
from agent_harness import write_config

from agent.runtime import systemd
from agent.runtime.supervisor import stop_tasks
from sync.mqtt_paho import raise_lost_cancellation

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from support import Broker


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound where systemd's NOTIFY_SOCKET would be."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    try:
        yield sock, path
    finally:
        sock.close()


async def _receive(sock: socket.socket) -> str:
    async with asyncio.timeout(20):
        data = await asyncio.get_running_loop().sock_recv(sock, 4096)
    return data.decode()


async def _receive_until(sock: socket.socket, wanted: str) -> list[str]:
    seen: list[str] = []
    while not any(wanted in m for m in seen):
        seen.append(await _receive(sock))
    return seen


async def test_notify_sends_one_datagram(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    env = {"NOTIFY_SOCKET": path}
    assert systemd.notify_ready("up", env=env)
    assert await _receive(sock) == "READY=1\nSTATUS=up"
    assert systemd.notify("WATCHDOG=1", env=env)
    assert await _receive(sock) == "WATCHDOG=1"
    assert systemd.notify_stopping(env=env)
    assert (await _receive(sock)).startswith("STOPPING=1")


async def test_abstract_socket_names() -> None:
    name = f"lineside-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        assert systemd.notify("READY=1", env={"NOTIFY_SOCKET": "@" + name})
        assert await _receive(sock) == "READY=1"


def test_without_systemd_nothing_is_sent(tmp_path: Path) -> None:
    assert not systemd.notify("READY=1", env={})
    assert systemd.watchdog_interval({}) is None
    # a socket that is gone is a warning, not a crash
    assert not systemd.notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})


def test_watchdog_interval_is_half_of_watchdog_sec() -> None:
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000"}
    assert systemd.watchdog_interval(env) == 15.0
    assert systemd.watchdog_interval({**env, "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert systemd.watchdog_interval({**env, "WATCHDOG_PID": "1"}) is None
    assert systemd.watchdog_interval({**env, "WATCHDOG_USEC": "soon"}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "30000000"}) is None


async def test_ping_watchdog_repeats(notify_socket: tuple[socket.socket, str]) -> None:
    sock, path = notify_socket
    task = asyncio.create_task(systemd.ping_watchdog(0.01, env={"NOTIFY_SOCKET": path}))
    try:
        assert [await _receive(sock) for _ in range(3)] == ["WATCHDOG=1"] * 3
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_agent_notifies_ready_pings_watchdog_and_stopping(
    tmp_path: Path, broker: Broker, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    config = write_config(tmp_path, broker, {})
    log = (tmp_path / "agent.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agent.cli",
        "run",
        "-c",
        str(config),
        stdout=log,
        stderr=log,
        env={
            **os.environ,
            "NOTIFY_SOCKET": path,
            "WATCHDOG_USEC": "200000",
            # the agent is the child of this test, not of systemd: no WATCHDOG_PID
        },
    )
    log.close()
    try:
        await _receive_until(sock, "READY=1")
        assert "WATCHDOG=1" in await _receive_until(sock, "WATCHDOG=1")
        process.send_signal(signal.SIGTERM)
        seen = await _receive_until(sock, "STOPPING=1")
        async with asyncio.timeout(20):
            code = await process.wait()
        assert code == 0, (tmp_path / "agent.log").read_text()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert seen[-1].startswith("STOPPING=1")


async def test_stop_tasks_cancels_again_a_task_that_lost_its_cancellation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ended = asyncio.Event()

    async def loses_one_cancellation() -> None:
        # as Python 3.11's asyncio.wait_for does when the awaited operation completes meanwhile
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        try:
            await asyncio.sleep(3600)
        finally:
            ended.set()

    tasks = [
        asyncio.create_task(loses_one_cancellation(), name="commands"),
        asyncio.create_task(asyncio.sleep(3600), name="monitor"),
    ]
    await asyncio.sleep(0)
    await stop_tasks(tasks, recancel_s=0.05)
    assert ended.is_set()
    assert all(task.cancelled() for task in tasks)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("task commands still running")


async def test_a_swallowed_cancellation_is_raised_again() -> None:
    raise_lost_cancellation()  # a task nobody cancelled carries on

    async def loses_its_cancellation() -> str:
        with contextlib.suppress(asyncio.CancelledError):  # as wait_for may (gh-86296)
            await asyncio.sleep(3600)
        raise_lost_cancellation()
        return "carried on"

    task = asyncio.create_task(loses_its_cancellation())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
