"""Config: the contract's example file is accepted; bad files name the key path and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config
from agent.config.plcs import PlcTcpConfig

DATA = Path(__file__).parent / "data"
EXAMPLE = (DATA / "contracts-example.toml").read_text()
MINIMAL = """
[agent]
site = "plant-a"
node = "line-3"

[[destinations]]
name = "plant-broker"
kind = "mqtt"
url = "mqtt://127.0.0.1:1883"
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "lineside.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_contract_example_is_accepted_as_it_is() -> None:
    config = load_config(DATA / "contracts-example.toml")
    assert config.agent.site == "plant-a"
    assert config.scanners[0].role == "inbound"
    plc = config.plcs[0]
    assert plc.batch is not None
    assert str(plc.batch.trigger) == "coil:0"
    assert isinstance(plc, PlcTcpConfig)
    assert plc.params["fill_temp_c"].type == "float32"
    assert [d.kind for d in config.destinations] == ["mqtt", "http", "file"]
    assert config.status.listen == "0.0.0.0:8080"


def test_contract_lines_example_is_accepted_and_each_line_has_its_product(
    tmp_path: Path,
) -> None:
    """CONTRACTS.md "Lines: one agent, several lines": `[plcs.line]` and a scanner's `line`."""
    path = tmp_path / "lineside.toml"
    path.write_text(
        '[agent]\nsite = "plant-a"\nnode = "twin"\n'
        '[line]\ngtin = "09501101530010"\nserial_width = 8\n'
        '[[plcs]]\nid = "filler-a"\nprotocol = "modbus-tcp"\nhost = "10.0.0.20"\n'
        '[plcs.batch]\ntrigger = "coil:0"\n'
        '[plcs.line]\ngtin = "09501101530003"\nlot_template = "{node}-A{date:%y%m%d}{batch:02d}"\n'
        '[[plcs]]\nid = "filler-b"\nprotocol = "modbus-tcp"\nhost = "10.0.0.21"\n'
        '[plcs.batch]\ntrigger = "coil:0"\n'
        '[[scanners]]\nid = "feed-a"\nrole = "line"\nline = "filler-a"\nport = "/dev/ttyUSB0"\n'
        '[[scanners]]\nid = "feed-b"\nrole = "line"\nline = "filler-b"\nport = "/dev/ttyUSB1"\n'
        '[[destinations]]\nname = "b"\nkind = "mqtt"\nurl = "mqtt://127.0.0.1:1883"\n'
    )
    config = load_config(path)
    assert [plc.id for plc in config.lines] == ["filler-a", "filler-b"]
    assert [config.line_of(s) for s in config.scanners] == ["filler-a", "filler-b"]
    a, b = (config.line.merged(plc.line) for plc in config.plcs)
    assert (a.gtin, a.lot_template, a.serial_width) == (
        "09501101530003",
        "{node}-A{date:%y%m%d}{batch:02d}",
        8,
    ), "its own keys, [line]'s for the others"
    assert (b.gtin, b.lot_template) == ("09501101530010", config.line.lot_template)


def test_contract_plc_protocols_example_is_accepted(tmp_path: Path) -> None:
    """CONTRACTS.md "More PLC protocols" (its `username` with a `password_file`, as it says)."""
    path = tmp_path / "lineside.toml"
    path.write_text(
        '[agent]\nsite = "plant-a"\nnode = "line-3"\n'
        '[[destinations]]\nname = "b"\nkind = "mqtt"\nurl = "mqtt://127.0.0.1:1883"\n'
        '[[plcs]]\nid = "capper"\nprotocol = "opcua"\nendpoint = "opc.tcp://10.0.0.21:4840"\n'
        'security_policy = "None"\nusername = "lineside"\npassword_file = "/etc/lineside/ua.pw"\n'
        "poll_ms = 100\n[plcs.batch]\n"
        'trigger = "ns=2;s=Capper.BatchDone"\nquantity = "ns=2;s=Capper.Quantity"\n'
        'ack = "ns=2;s=Capper.BatchAck"\nwrite_code_to = "ns=2;s=Capper.TraceCode"\n'
        '[[plcs]]\nid = "labeller"\nprotocol = "s7"\nhost = "10.0.0.22"\nport = 102\n'
        "rack = 0\nslot = 1\n[plcs.batch]\n"
        'trigger = "DB10.DBX0.0"\nquantity = "DB10.DBD2:dint"\nack = "DB10.DBX0.1"\n'
        'write_code_to = "DB10.DBB100:string:64"\n'
        '[[plcs]]\nid = "palletiser"\nprotocol = "enip"\nhost = "10.0.0.23"\nport = 44818\n'
        'slot = 0\n[plcs.batch]\ntrigger = "BatchDone"\nquantity = "BatchQty"\n'
        'ack = "BatchAck"\nwrite_code_to = "TraceCode"\n'
    )
    capper, labeller, palletiser = load_config(path).plcs
    assert [p.protocol for p in (capper, labeller, palletiser)] == ["opcua", "s7", "enip"]
    assert capper.batch is not None
    assert str(capper.batch.trigger) == "ns=2;s=Capper.BatchDone"
    assert labeller.batch is not None
    assert labeller.batch.trigger.info.kind == "bool"  # type: ignore[union-attr]
    assert str(labeller.batch.write_code_to) == "DB10.DBB100:string:64"
    assert palletiser.batch is not None
    assert str(palletiser.batch.ack) == "BatchAck"


def test_examples_in_packaging_pass(tmp_path: Path) -> None:
    examples = sorted((Path(__file__).parent.parent / "packaging" / "examples").glob("*.toml"))
    assert examples
    # valid files; the files they name exist only on a site (see tests/test_check_config.py)
    for example in examples:
        load_config(example)


def test_minimal_config_defaults(tmp_path: Path) -> None:
    path = tmp_path / "lineside.toml"
    path.write_text(MINIMAL)
    config = load_config(path)
    assert config.status.listen == "127.0.0.1:8080"
    assert config.status.admin_password_file is None
    assert config.store.synchronous == "full"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            MINIMAL.replace('site = "plant-a"\n', ""), "agent.site: required key", id="missing-site"
        ),
        pytest.param(
            MINIMAL.replace("[agent]\n", "[agent]\ncolour = 'red'\n"),
            "agent.colour: unknown key",
            id="unknown-key",
        ),
        pytest.param(
            MINIMAL
            + '\n[[plcs]]\nid = "filler"\nprotocol = "modbus-tcp"\nhost = "10.0.0.20"\n'
            + '[plcs.batch]\ntrigger = "coils:0"\n',
            "plcs[0].batch.trigger:",
            id="bad-register-address",
        ),
        pytest.param(
            MINIMAL.replace("mqtt://127.0.0.1:1883", "ftp://broker"),
            "destinations[0].url:",
            id="bad-url",
        ),
        pytest.param(
            MINIMAL.replace('node = "line-3"', 'node = "line 3/x"'), "agent.node:", id="bad-node"
        ),
        pytest.param(
            MINIMAL + '\n[line]\ngtin = "09501101530004"\n', "line.gtin:", id="bad-gtin-check-digit"
        ),
        pytest.param(
            MINIMAL + '\n[line]\ntrace_template = "(01){gtin}{colour}"\n',
            "line.trace_template:",
            id="bad-template",
        ),
        pytest.param(
            MINIMAL
            + '\n[[scanners]]\nid = "a"\nrole = "inbound"\nport = "/dev/x"\n'
            + '[[scanners]]\nid = "a"\nrole = "line"\nport = "/dev/y"\n',
            "scanners[1].id:",
            id="duplicate-id",
        ),
        pytest.param(
            MINIMAL + '\n[[scanners]]\nid = "a"\nrole = "forklift"\nport = "/dev/x"\n',
            "scanners[0].role:",
            id="bad-role",
        ),
        pytest.param(
            MINIMAL.replace('kind = "mqtt"', 'kind = "carrier-pigeon"'),
            "destinations[0]",
            id="bad-kind",
        ),
        pytest.param("[agent\n", "TOML syntax", id="toml-syntax"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert any(expected in line for line in found), found


def test_every_problem_is_reported(tmp_path: Path) -> None:
    text = MINIMAL.replace('site = "plant-a"\n', "").replace("[agent]\n", "[agent]\nfoo = 1\n")
    found = problems(tmp_path, text)
    assert len(found) == 2, found


def test_check_config_cli_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(MINIMAL)
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL.replace('site = "plant-a"\n', ""))
    env = {**os.environ, "LINESIDE_CONFIG": str(good)}
    ok = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check-config"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    res = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check-config", "-c", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 2
    assert res.stderr.strip() == "agent.site: required key is missing"
    assert "Traceback" not in res.stderr


def test_run_refuses_bad_config_before_touching_devices(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        MINIMAL.replace('site = "plant-a"\n', "")
        + f'\n[[scanners]]\nid = "a"\nrole = "inbound"\nport = "{tmp_path}/never-opened"\n'
    )
    res = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "-c", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert res.returncode == 2
    assert "agent.site" in res.stderr
    assert not (tmp_path / "never-opened").exists()


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check-config", "-c", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1
