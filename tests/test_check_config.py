"""`check-config` fails wherever `run` would, with the same one line naming the key.

Each case is a valid TOML file whose files or directories are not what `run` needs: a password
file missing, unreadable, empty or blank; a certificate, key or CA a destination names missing;
`agent.data_dir` a file; the outbox the data directory records gone. `check-config` and `run`
are both run as the CLI runs (a child process), and must print the same line and exit 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from sync.outbox_identity import write_identity

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

BASE = """
[agent]
site = "plant-a"
node = "line-3"
data_dir = "{data}"

[status]
listen = "127.0.0.1:0"
admin_password_file = "{pw}"

[[destinations]]
name = "plant-broker"
kind = "mqtt"
url = "mqtts://127.0.0.1:1"
ca_file = "{ca}"
cert_file = "{cert}"
key_file = "{key}"

[[plcs]]
id = "capper"
protocol = "opcua"
endpoint = "opc.tcp://127.0.0.1:1"
security_policy = "Basic256Sha256"
cert_file = "{ua_cert}"
key_file = "{ua_key}"
server_cert_file = "{ua_server}"
username = "lineside"
password_file = "{ua_pw}"
"""


def lineside(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,  # a `run` that does not refuse would run for ever
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def setup(tmp_path: Path) -> Path:
    """A config whose every named file is in place; returns the config's path."""
    names = ("ca", "cert", "key", "ua_cert", "ua_key", "ua_server", "ua_pw")
    files = {name: tmp_path / f"{name}.pem" for name in names}
    for path in files.values():
        path.write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "admin.pw").write_text("s3cret-line3\n")
    config = tmp_path / "lineside.toml"
    config.write_text(
        BASE.format(
            data=tmp_path / "data",
            pw=tmp_path / "admin.pw",
            **{k: str(v) for k, v in files.items()},
        )
    )
    return config


def _password_file_a_directory(tmp_path: Path) -> None:
    (tmp_path / "admin.pw").unlink()
    (tmp_path / "admin.pw").mkdir()  # unreadable as a file even for root


def _recorded_outbox_deleted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_identity(data / "outbox.db", created="2026-01-02T03:04:05Z", labels={})


CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    "password file missing": (
        lambda t: (t / "admin.pw").unlink(),
        "status.admin_password_file: cannot read",
    ),
    "password file unreadable": (
        _password_file_a_directory,
        "status.admin_password_file: cannot read",
    ),
    "password file empty": (
        lambda t: (t / "admin.pw").write_text(""),
        "status.admin_password_file: ",
    ),
    "password file blank": (
        lambda t: (t / "admin.pw").write_text("  \t \n\n"),
        "status.admin_password_file: ",
    ),
    "certificate missing": (
        lambda t: (t / "cert.pem").unlink(),
        "destinations[0].cert_file: cannot read",
    ),
    "key missing": (
        lambda t: (t / "key.pem").unlink(),
        "destinations[0].key_file: cannot read",
    ),
    "CA missing": (
        lambda t: (t / "ca.pem").unlink(),
        "destinations[0].ca_file: cannot read",
    ),
    "OPC UA certificate missing": (
        lambda t: (t / "ua_cert.pem").unlink(),
        "plcs[0].cert_file: cannot read",
    ),
    "OPC UA server certificate missing": (
        lambda t: (t / "ua_server.pem").unlink(),
        "plcs[0].server_cert_file: cannot read",
    ),
    "OPC UA password file missing": (
        lambda t: (t / "ua_pw.pem").unlink(),
        "plcs[0].password_file: cannot read",
    ),
    "data_dir is a file": (
        lambda t: (t / "data").write_text("not a directory"),
        "agent.data_dir: ",
    ),
    "recorded outbox deleted": (
        _recorded_outbox_deleted,
        "agent.data_dir: outbox ",
    ),
}


def test_a_config_with_its_files_in_place_passes(tmp_path: Path) -> None:
    done = lineside("check-config", "-c", str(setup(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(": ok")


@pytest.mark.parametrize("case", CASES)
def test_check_config_fails_where_run_would(tmp_path: Path, case: str) -> None:
    config = setup(tmp_path)
    spoil, expected = CASES[case]
    spoil(tmp_path)
    check = lineside("check-config", "-c", str(config))
    assert check.returncode == 2, (check.stdout, check.stderr)
    lines = check.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected), lines
    assert "Traceback" not in check.stderr
    run = lineside("run", "-c", str(config))
    assert run.returncode == 2, run.stderr[-2000:]
    assert lines[0] in run.stderr
