"""Shared fixtures: mosquitto and PostgreSQL per test, a plant store per module, pty, leak checks.

A test fails when it leaves threads running (`no_leaked_threads`) or asyncio tasks running
(`no_leaked_tasks`): both are waited for a few seconds after the test and its other fixtures
have finished, then named in the failure. A leaked task is cancelled before the test fails, so
the next test starts clean. A socket left open fails the test in which it is freed, with the
place it was made (`socket_sites`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING

import pytest
from plant_support import Plant, shared_plant
from postgres_support import PostgresCluster, PostgresTemplate
from socket_sites import name_unclosed_sockets, record_socket_sites
from support import Broker, Pty

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

LEAK_GRACE_S = 5.0
"""How long a thread or task may take to end after its test (a cancelled task, a closing pool)."""

record_socket_sites()


@pytest.fixture(scope="session", autouse=True)
def unclosed_sockets_named() -> Iterator[None]:
    """An unclosed socket's warning comes with where the socket was made."""
    undo = name_unclosed_sockets()
    try:
        yield
    finally:
        undo()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A mosquitto of this test's own on a free loopback port; the test may stop/start it."""
    b = Broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[PostgresTemplate]:
    """An initdb'd data directory, made once per session (initdb is the slow part)."""
    template = PostgresTemplate.make()
    try:
        yield template
    finally:
        template.remove()


@pytest.fixture
def postgres(postgres_template: PostgresTemplate) -> Iterator[PostgresCluster]:
    """A PostgreSQL of this test's own (a copy of the template) on a free loopback port."""
    cluster = postgres_template.cluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="module")
def plant(
    postgres_template: PostgresTemplate, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Plant]:
    """One migrated plant store (its own cluster) shared by the tests of a module."""
    with shared_plant(postgres_template, tmp_path_factory.mktemp("plant")) as p:
        yield p


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[Pty]:
    """A plugged-in pseudo-terminal scanner behind the link `tmp_path/scanner`."""
    p = Pty(tmp_path / "scanner")
    p.plug()
    try:
        yield p
    finally:
        p.unplug()


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves threads running (an unclosed aiosqlite connection, say)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + LEAK_GRACE_S
    while True:
        leaked = [
            t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"threads left running: {leaked}"


@pytest.fixture(autouse=True)
async def no_leaked_tasks(no_leaked_threads: None) -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running (started, then neither awaited nor ended).

    Autouse, so it is set up before the test's other fixtures and torn down after them, while
    the test's event loop still runs: what is left then was left by the test or a fixture.
    The thread check is torn down after it and after the event loop is closed (which ends the
    loop's executor threads), so it only sees threads the test left.
    """
    before = asyncio.all_tasks()
    yield
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LEAK_GRACE_S
    while True:
        leaked = [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]
        if not leaked or loop.time() > deadline:
            break
        await asyncio.wait(leaked, timeout=min(0.05, max(0.0, deadline - loop.time())))
    for task in leaked:
        task.cancel()
    if leaked:
        await asyncio.wait(leaked, timeout=LEAK_GRACE_S)
    assert not leaked, f"asyncio tasks left running: {[t.get_name() for t in leaked]} {leaked}"
