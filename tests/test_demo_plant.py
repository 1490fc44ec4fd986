"""`lineside demo`: three agents, mosquitto, a private PostgreSQL and the plant view, end to end.

The demo runs as a process (as `make demo` runs it) on free ports; it must print every URL,
and, from its plant view alone, a trace of a shipped lot must reach the received material lots
through the three nodes. Ctrl-C stops everything (the database too) with exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from postgres_support import postgres_bindir

from agent.cli.demo_postgres import cluster_root

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.skipif(
    postgres_bindir() is None, reason="PostgreSQL is not installed (make demo installs it)"
)


async def shipped_trace(client: httpx.AsyncClient) -> dict[str, Any] | None:
    """The trace of a shipped lot made of received material, once there is one."""
    lots = (await client.get("/api/reconciliation")).json()
    for lot in lots:
        if not lot["shipped_from"]:
            continue
        response = await client.get(f"/api/trace/{lot['lot']}")
        if response.status_code == 200 and len(response.json()["nodes"]) == 3:
            return response.json()  # type: ignore[no-any-return]
    return None


async def test_the_plant_demo_runs_three_nodes_and_its_plant_view(tmp_path: Path) -> None:
    log = (tmp_path / "demo.log").open("wb")
    demo = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "agent.cli", "demo", "--dir", str(tmp_path / "demo")),
        *("--listen", "127.0.0.1:0", "--rate", "10", "--batch-seconds", "1", "--quiet"),
        *("--plc", "opcua"),  # the line PLC on another protocol than the one-agent demo's
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
    )
    log.close()
    assert demo.stdout is not None
    try:
        header: list[str] = []
        async with asyncio.timeout(60):
            while not header or not header[-1].startswith("Ctrl-C"):
                line = await demo.stdout.readline()
                assert line, f"demo ended early:\n{(tmp_path / 'demo.log').read_text()[-3000:]}"
                header.append(line.decode().strip())
        text = "\n".join(header)
        # the contract's demo output first: the page's URL, then the broker's address
        urls = re.findall(r"(?:http|mqtt)://\S+", text)
        assert re.match(r"status page:\s+http://", header[1]), text
        assert re.match(r"broker:\s+mqtt://", header[2]), text
        async with httpx.AsyncClient(base_url=urls[0], timeout=10) as client:
            status = (await client.get("/api/status")).json()
        assert status["agent"]["node"] == "line-1", status
        for name in ("plant view", "dock-in", "line-1", "dock-out"):
            assert re.search(rf"^{name}:\s+http://127\.0\.0\.1:\d+/", text, re.MULTILINE), text
        assert re.search(r"broker:\s+mqtt://", text), text
        assert re.search(r"plant db:\s+postgresql://", text), text
        found = re.search(r"plant view:\s+(http://\S+)", text)
        assert found, text
        async with httpx.AsyncClient(base_url=found[1], timeout=10) as client:
            trace = None
            async with asyncio.timeout(60):
                while trace is None:
                    await asyncio.sleep(0.5)
                    trace = await shipped_trace(client)
            fleet = (await client.get("/api/fleet")).json()
        assert trace["nodes"] == ["dock-in", "dock-out", "line-1"]
        [batch] = trace["batches"]
        assert batch["node"] == "line-1"
        assert batch["shipments"][0]["node"] == "dock-out"
        received = [r["node"] for m in batch["materials"] for r in m["received"]]
        assert received
        assert set(received) == {"dock-in"}
        assert {n["node"]: n["online"] for n in fleet} == {
            "dock-in": True,
            "dock-out": True,
            "line-1": True,
        }
        demo.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            rest = await demo.stdout.read()
            code = await demo.wait()
        assert code == 0, (tmp_path / "demo.log").read_text()[-3000:]
        assert b"Lineside demo stopped." in rest
    finally:
        if demo.returncode is None:
            demo.kill()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await demo.wait()
        remove_cluster(cluster_root((tmp_path / "demo").resolve()))


def remove_cluster(root: Path) -> None:
    """Stop the demo's database if a killed demo left it running; delete its folder."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((root / "data" / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGQUIT)  # immediate shutdown: a test's scratch database
    shutil.rmtree(root, ignore_errors=True)
