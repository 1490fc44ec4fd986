"""`lineside doctor` on OPC UA, S7 and EtherNet/IP PLCs: each protocol's own server answers.

A reachable PLC is ok with every configured address read once; an address the PLC lacks, a
signal of the wrong type and a PLC that is not there fail, naming the address or the link, with
the protocol's hint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from protocol_lines import PROTOCOLS, address, line_on, plc_section
from support import free_port

from agent.cli.doctor import Status, check_plc
from agent.config import load_config

if TYPE_CHECKING:
    from pathlib import Path

    from agent.config.plcs import AnyPlcConfig
    from drivers.simulators.line_program import SimulatedPlc

pytestmark = pytest.mark.parametrize("protocol", PROTOCOLS)
AGENT = '[agent]\nsite = "plant-a"\nnode = "line-3"\n'
FILE_DEST = '[[destinations]]\nname = "qms"\nkind = "file"\ndir = "/srv/qms"\n'
FILE_DEST = '[[destinations]]\nname = "qms"\nkind = "file"\ndir = "/srv/qms"\n'
MISSING = {"opcua": "ns=2;s=Filler.NoSuchNode", "s7": "DB99.DBW0:int", "enip": "NoSuchTag"}
HINT = {"opcua": "node ids", "s7": "PUT/GET", "enip": "tag names"}


def plc_config(tmp_path: Path, protocol: str, sim: SimulatedPlc, **kw: object) -> AnyPlcConfig:
    path = tmp_path / "lineside.toml"
    agent = AGENT + f'data_dir = "{tmp_path / "data"}"\n' + FILE_DEST
    path.write_text(agent + plc_section(protocol, sim, **kw))  # type: ignore[arg-type]
    return load_config(path).plcs[0]


async def test_a_reachable_plc_is_ok_with_every_address_read(tmp_path: Path, protocol: str) -> None:
    async with line_on(protocol) as sim:
        finding = await check_plc(plc_config(tmp_path, protocol, sim))
    assert finding.status is Status.OK, finding
    # trigger, quantity, ack, write_code_to, batch_id and the two parameters
    assert "7 configured address(es) read" in finding.detail


async def test_an_address_the_plc_lacks_fails_naming_it(tmp_path: Path, protocol: str) -> None:
    async with line_on(protocol) as sim:
        config = plc_config(tmp_path, protocol, sim, params={"bogus": MISSING[protocol]})
        finding = await check_plc(config)
    assert finding.status is Status.FAIL
    assert MISSING[protocol].split(":")[0] in finding.detail
    assert HINT[protocol] in finding.hint


async def test_a_signal_of_the_wrong_type_fails_naming_it(tmp_path: Path, protocol: str) -> None:
    async with line_on(protocol) as sim:
        config = plc_config(tmp_path, protocol, sim, mode="counter")  # counter: no ack …
        batch = config.batch
        assert batch is not None
        # … so name a wrong-typed one: the quantity, a number
        quantity = address(protocol, "quantity")
        config = config.model_copy(
            update={"batch": batch.model_copy(update={"ack": batch.quantity})}
        )
        finding = await check_plc(config)
    assert finding.status is Status.FAIL
    assert f"batch.ack {quantity} is" in finding.detail
    assert "writable bool" in finding.detail


async def test_a_plc_that_is_not_there_fails_with_the_protocols_hint(
    tmp_path: Path, protocol: str
) -> None:
    async with line_on(protocol) as sim:
        config = plc_config(tmp_path, protocol, sim)
    port = free_port()
    link = {"endpoint": f"opc.tcp://127.0.0.1:{port}"} if protocol == "opcua" else {"port": port}
    finding = await check_plc(config.model_copy(update={"timeout_ms": 500, **link}))
    assert finding.status is Status.FAIL
    assert HINT[protocol] in finding.hint
