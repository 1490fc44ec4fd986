"""`lineside doctor` against real peers: mosquitto, pymodbus's server, pty ports, uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import TYPE_CHECKING

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from support import free_port, wait_until

from agent.cli.doctor import EXIT_FAILED, EXIT_WARNINGS, Finding, Status, exit_code, run_checks
from agent.cli.main import main
from agent.config import load_config
from drivers.simulators.modbus_plc import FillingLineSimulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from starlette.requests import Request
    from support import Broker, Pty

TOKEN = "s3cret-token"


class _Server(uvicorn.Server):
    """A uvicorn that leaves the process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _options(request: Request) -> Response:
    if request.headers.get("authorization") != f"Bearer {TOKEN}":
        return Response(status_code=401)
    return Response(status_code=204, headers={"Allow": "POST, OPTIONS"})


@contextlib.asynccontextmanager
async def http_server() -> AsyncIterator[str]:
    app = Starlette(routes=[Route("/events", _options, methods=["OPTIONS", "POST"])])
    port = free_port()
    server = _Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or task.done(), what="uvicorn to start")
        yield f"http://127.0.0.1:{port}/events"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def plc() -> AsyncIterator[FillingLineSimulator]:
    async with FillingLineSimulator(port=0, auto=False, seed=1) as sim:
        yield sim


def _config(
    tmp_path: Path,
    *,
    scanner_port: str,
    plc_port: int,
    mqtt_url: str,
    http_url: str,
    token_file: Path,
    drop: Path,
    max_backlog_mb: int = 16,
) -> Path:
    text = f"""
[agent]
site = "plant-a"
node = "line-3"
data_dir = "{tmp_path / "data"}"

[store]
max_backlog_mb = {max_backlog_mb}
min_free_mb = 1

[[scanners]]
id = "dock-in-1"
role = "inbound"
port = "{scanner_port}"

[[plcs]]
id = "filler"
protocol = "modbus-tcp"
host = "127.0.0.1"
port = {plc_port}
unit = 1

[plcs.batch]
trigger = "coil:0"
quantity = "holding:100:uint32"
ack = "coil:1"

[plcs.params]
fill_temp_c = "holding:110:float32"

[[destinations]]
name = "plant-broker"
kind = "mqtt"
url = "{mqtt_url}"
connect_timeout = 2

[[destinations]]
name = "erp"
kind = "http"
url = "{http_url}"
bearer_token_file = "{token_file}"
timeout_s = 2

[[destinations]]
name = "qms-drop"
kind = "file"
dir = "{drop}"
"""
    path = tmp_path / "lineside.toml"
    path.write_text(text)
    return path


def _by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


async def test_everything_reachable_is_ok(
    tmp_path: Path, broker: Broker, pty: Pty, plc: FillingLineSimulator
) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    async with http_server() as url:
        config = load_config(
            _config(
                tmp_path,
                scanner_port=str(pty.link),
                plc_port=plc.port,
                mqtt_url=broker.url,
                http_url=url,
                token_file=token,
                drop=tmp_path / "drop",
            )
        )
        findings = _by_check(await run_checks(config))
    for name in (
        "data dir",
        "disk",
        "scanner dock-in-1",
        "plc filler",
        "destination plant-broker",
        "destination erp",
        "destination qms-drop",
    ):
        assert findings[name].status is Status.OK, findings[name]
    assert "4 configured address(es)" in findings["plc filler"].detail
    assert "clock" in findings


async def test_failures_name_the_problem_and_give_a_hint(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("wrong")
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o500)
    dead_port = free_port()
    async with http_server() as url:
        config = load_config(
            _config(
                tmp_path,
                scanner_port=str(tmp_path / "ttyUSB9"),
                plc_port=dead_port,
                mqtt_url=f"mqtt://127.0.0.1:{free_port()}",
                http_url=url,
                token_file=token,
                drop=read_only / "inbox",
                max_backlog_mb=10**9,  # more than any test disk
            )
        )
        findings = _by_check(await run_checks(config))
    for name in ("scanner dock-in-1", "plc filler", "destination plant-broker", "destination erp"):
        assert findings[name].status is Status.FAIL, findings[name]
        assert findings[name].hint
    assert "does not exist" in findings["scanner dock-in-1"].detail
    assert "refused" in findings["destination plant-broker"].detail
    assert "401" in findings["destination erp"].detail
    assert findings["disk"].status is Status.WARN
    assert "max_backlog_mb" in findings["disk"].hint
    if os.geteuid() != 0:  # root writes anywhere
        assert findings["destination qms-drop"].status is Status.FAIL
    assert exit_code(list(findings.values())) == EXIT_FAILED


def test_exit_code_reflects_the_worst() -> None:
    ok = Finding("a", Status.OK, "")
    warn = Finding("b", Status.WARN, "", "do this")
    fail = Finding("c", Status.FAIL, "", "do that")
    assert exit_code([ok]) == 0
    assert exit_code([ok, warn]) == EXIT_WARNINGS
    assert exit_code([warn, fail, ok]) == EXIT_FAILED


async def test_cli_prints_the_table(
    tmp_path: Path,
    broker: Broker,
    pty: Pty,
    plc: FillingLineSimulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    async with http_server() as url:
        path = _config(
            tmp_path,
            scanner_port=str(pty.link),
            plc_port=plc.port,
            mqtt_url=broker.url,
            http_url=url,
            token_file=token,
            drop=tmp_path / "drop",
        )
        code = await asyncio.to_thread(main, ["doctor", "-c", str(path)])
    out = capsys.readouterr().out
    assert code in (0, EXIT_WARNINGS)  # the clock of a test machine may not be synchronised
    assert "ok    plc filler" in out
    assert "failure(s)" in out


def test_cli_bad_config_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[agent]\nsite = 'x'\n")
    assert main(["doctor", "-c", str(path)]) == 2
