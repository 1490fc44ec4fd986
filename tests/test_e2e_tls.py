"""MQTT over TLS through the real agent: a mosquitto of the test's own with a CA and server
certificate made in the test, client certificates, a password from a file, a wrong CA.

The broker has two listeners: TLS with a required client certificate (the agent's) and plain
loopback (the test's independent subscriber). The TLS destination uses its own topic prefix, so
what the subscriber sees under it came through TLS.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from agent_harness import running_agent, write_config
from certs import Pki, make_pki
from destination_support import destination
from support import STAY_ROOT, Broker, Collected, free_port, subscriber, wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

    from support import Pty

TLS_EVENTS = "tls/v1/plant-a/line-3/"


class TlsBroker:
    """A mosquitto with a plain listener (`broker.port`) and a TLS one (`tls_port`)."""

    def __init__(self, broker: Broker, pki: Pki, tls_port: int, passwords: Path) -> None:
        self.broker = broker
        self.pki = pki
        self.tls_port = tls_port
        self.passwords = passwords


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[TlsBroker]:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(tool).exists():
        pytest.skip("mosquitto_passwd is not installed (it comes with the mosquitto package)")
    pki = make_pki(tmp_path / "pki")
    passwords = tmp_path / "passwords"
    subprocess.run([tool, "-c", "-b", str(passwords), "agent", "right horse"], check=True)
    plain, secure = free_port(), free_port()
    broker = Broker(tmp_path, port=plain)
    # Anonymous clients may use the plain listener; a client naming a user must prove it.
    broker.extra_config = (
        f"{STAY_ROOT}password_file {passwords}\n"
        f"listener {plain} 127.0.0.1\n"
        f"listener {secure} 127.0.0.1\ncafile {pki.ca_cert}\ncertfile {pki.server_cert}\n"
        f"keyfile {pki.server_key}\nrequire_certificate true\n"
    )
    broker.start()
    try:
        yield TlsBroker(broker, pki, secure, passwords)
    finally:
        broker.stop()


def tls_destination(tls: TlsBroker, *, ca_file: Path, password_file: Path) -> str:
    return (
        '[[destinations]]\nname = "plant-tls"\nkind = "mqtt"\n'
        f'url = "mqtts://localhost:{tls.tls_port}"\ntopic_prefix = "tls/v1"\n'
        f'ca_file = "{ca_file}"\ncert_file = "{tls.pki.client_cert}"\n'
        f'key_file = "{tls.pki.client_key}"\n'
        f'username = "agent"\npassword_file = "{password_file}"\n'
    )


def tls_raws(got: Collected) -> list[str]:
    return [
        str(e["data"]["raw"])
        for e in got.payloads(lambda t: t.startswith(TLS_EVENTS) and not t.endswith("/state"))
        if "raw" in e["data"]
    ]


async def test_wrong_ca_is_refused_clearly_and_nothing_is_lost_once_fixed(
    tmp_path: Path, tls: TlsBroker, pty: Pty
) -> None:
    password = tmp_path / "mqtt.pw"
    password.write_text("right horse\n")
    other = make_pki(tmp_path / "other", "other-ca")
    wrong = write_config(
        tmp_path,
        tls.broker,
        {"dock-in-1": ("inbound", pty)},
        extra=tls_destination(tls, ca_file=other.ca_cert, password_file=password),
    )
    async with (
        subscriber(tls.broker, "tls/v1/#") as got,
        running_agent(wrong) as agent,
    ):
        for i in range(5):
            pty.write(f"TLS-{i}\r\n".encode())
        await wait_until(
            lambda: "wrong CA" in (destination(agent, "plant-tls").last_error or ""),
            what="a TLS error on the destination's health",
        )
        await wait_until(lambda: destination(agent, "plant-tls").backlog >= 5, what="backlog")
        status = destination(agent, "plant-tls")
        assert status.connected is False
        assert status.last_error is not None
        assert "TLS: certificate verify failed (wrong CA?)" in status.last_error
        # the plain destination next to it is not held up
        assert destination(agent, "plant-broker").connected is True
        await wait_until(
            lambda: any("plant-tls" in r and "wrong CA" in r for r in agent.monitor.health_reasons),
            what="the reason on /healthz",
        )
        assert agent.status_url is not None
        async with httpx.AsyncClient() as client:
            health = await client.get(agent.status_url + "healthz")
            api = (await client.get(agent.status_url + "api/status")).json()
        assert health.status_code == 503
        assert any("wrong CA" in r for r in health.json()["reasons"])
        by_name = {d["name"]: d for d in api["destinations"]}
        assert "wrong CA" in by_name["plant-tls"]["last_error"]
        assert "right horse" not in json.dumps(api)
    assert tls_raws(got) == []

    fixed = write_config(
        tmp_path,
        tls.broker,
        {"dock-in-1": ("inbound", pty)},
        extra=tls_destination(tls, ca_file=tls.pki.ca_cert, password_file=password),
    )
    async with (
        subscriber(tls.broker, "tls/v1/#") as got,
        running_agent(fixed) as agent,
    ):
        pty.write(b"TLS-5\r\n")
        await got.wait_for(lambda g: "TLS-5" in tls_raws(g))
        await wait_until(lambda: destination(agent, "plant-tls").connected, what="connected")
    assert list(dict.fromkeys(tls_raws(got))) == [f"TLS-{i}" for i in range(6)]
    state = [json.loads(p) for t, p, _ in got.messages if t == TLS_EVENTS + "state"]
    assert state[0]["online"] is True


async def test_password_from_file_is_read_at_each_connect(
    tmp_path: Path, tls: TlsBroker, pty: Pty
) -> None:
    password = tmp_path / "mqtt.pw"
    password.write_text("wrong horse\n")
    config = write_config(
        tmp_path,
        tls.broker,
        {"dock-in-1": ("inbound", pty)},
        extra=tls_destination(tls, ca_file=tls.pki.ca_cert, password_file=password),
    )
    async with (
        subscriber(tls.broker, "tls/v1/#") as got,
        running_agent(config) as agent,
    ):
        pty.write(b"AUTH-1\r\n")
        await wait_until(
            lambda: "not authorized" in (destination(agent, "plant-tls").last_error or ""),
            what="the broker's refusal on health",
        )
        assert "horse" not in (destination(agent, "plant-tls").last_error or "")
        password.write_text("right horse\n")  # fixed on disk, no restart
        pty.write(b"AUTH-2\r\n")
        await got.wait_for(lambda g: "AUTH-2" in tls_raws(g), timeout=60)
    assert list(dict.fromkeys(tls_raws(got))) == ["AUTH-1", "AUTH-2"]
