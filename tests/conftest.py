"""Shared fixtures: a mosquitto per test, pty scanners, and a check that nothing leaks."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest
from support import Broker, Pty

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A mosquitto of this test's own on a free loopback port; the test may stop/start it."""
    b = Broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


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
    deadline = time.monotonic() + 5
    while True:
        leaked = [
            t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon
        ]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"threads left running: {leaked}"
