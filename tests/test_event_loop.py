"""The event loop the agent runs on: uvloop by default, asyncio's on request, refused by name."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
import uvloop
from agent_harness import AgentProcess, write_config
from support import wait_until

from agent.cli import event_loop
from agent.cli.event_loop import EventLoopChoiceError, loop_factory, loop_name

if TYPE_CHECKING:
    from pathlib import Path

    from support import Broker


def _running_loop() -> str:
    return type(asyncio.get_running_loop()).__module__.partition(".")[0]


async def _which() -> str:
    return _running_loop()


def test_uvloop_unless_asyncio_is_asked_for() -> None:
    assert loop_factory("auto") is uvloop.new_event_loop
    assert loop_factory("uvloop") is uvloop.new_event_loop
    assert loop_factory("asyncio") is None
    assert event_loop.run(_which(), choice="auto") == "uvloop"
    assert event_loop.run(_which(), choice="asyncio") == "asyncio"
    assert (loop_name("auto"), loop_name("asyncio")) == ("uvloop", "asyncio")


def test_an_unknown_choice_is_refused_by_name() -> None:
    with pytest.raises(EventLoopChoiceError, match="LINESIDE_EVENT_LOOP must be one of"):
        loop_factory("trio")


async def test_the_tests_run_on_the_agents_loop() -> None:
    """In-process tests exercise the agent's parts on the loop `lineside run` uses."""
    expected = "asyncio" if os.environ.get("LINESIDE_EVENT_LOOP") == "asyncio" else "uvloop"
    assert _running_loop() == expected


def test_run_refuses_an_unknown_event_loop_in_one_line(tmp_path: Path, broker: Broker) -> None:
    config = write_config(tmp_path, broker, {})
    done = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "LINESIDE_EVENT_LOOP": "trio"},
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "lineside: LINESIDE_EVENT_LOOP must be one of auto, uvloop, asyncio, not 'trio'"
    )


@pytest.mark.parametrize("choice", ["auto", "asyncio"])
async def test_the_agent_says_which_loop_it_runs_on(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch, choice: str
) -> None:
    monkeypatch.setenv("LINESIDE_EVENT_LOOP", choice)
    agent = AgentProcess(write_config(tmp_path, broker, {}), tmp_path / "agent.log")
    agent.start()
    running = f"lineside running (event loop: {'uvloop' if choice == 'auto' else 'asyncio'})"
    try:
        await wait_until(lambda: running in agent.log(), timeout=30, what=running)
    finally:
        assert agent.terminate() == 0
