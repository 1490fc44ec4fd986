"""MqttSink against a real mosquitto: delivery, window, state and will, failures, ACL, TLS, auth."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiomqtt
import pytest
from certs import make_pki
from pydantic import ValidationError
from support import STAY_ROOT, Broker, free_port, wait_until

from sync.base import Envelope, SinkRejected, SinkUnavailable
from sync.mqtt import MqttDestinationConfig, MqttSink
from sync.topics import Topics

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

REPO = Path(__file__).resolve().parents[1]
BASE = "lineside/v1/plant-a/line-3"
ONLINE = b'{"online": true}'
OFFLINE = b'{"online": false}'


def config(url: str, **overrides: Any) -> MqttDestinationConfig:
    return MqttDestinationConfig.model_validate(
        {"name": "plant-broker", "kind": "mqtt", "url": url, **overrides}
    )


def sink(cfg: MqttDestinationConfig, client_id: str = "lineside-test") -> MqttSink:
    return MqttSink(
        cfg,
        topics=Topics(BASE),
        client_id=client_id,
        online_payload=ONLINE,
        offline_payload=OFFLINE,
    )


def envelope(seq: int, route: str = "goods.received") -> Envelope:
    payload = b'{"id": "E%06d", "seq": %d, "raw": "\\u001d\xc3\xa9"}' % (seq, seq)
    return Envelope(seq=seq, id=f"E{seq:06d}", route=route, payload=payload, created=0.0)


@dataclass
class Seen:
    """Messages an MQTT 5 subscriber received, with their user properties."""

    messages: list[aiomqtt.Message] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on(self, topic: str) -> list[aiomqtt.Message]:
        return [m for m in self.messages if m.topic.value == topic]

    async def wait_for(self, predicate: Callable[[Seen], bool], within: float = 20) -> None:
        async with asyncio.timeout(within):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def watcher(port: int, topic: str = "#") -> AsyncIterator[Seen]:
    """An independent MQTT 5 subscriber on `port` (QoS 1) for the duration of the block."""
    seen = Seen()
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=f"watch-{free_port()}", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        await client.subscribe(topic, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                seen.messages.append(message)
                seen.changed.set()

        task = asyncio.create_task(collect(), name="test-watcher")
        try:
            yield seen
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def user_properties(message: aiomqtt.Message) -> list[tuple[str, str]]:
    props = message.properties
    return list(getattr(props, "UserProperty", [])) if props is not None else []


# -- config -------------------------------------------------------------------------------


def test_config_defaults_and_ports() -> None:
    cfg = config("mqtt://broker.local")
    assert (cfg.host, cfg.port, cfg.tls) == ("broker.local", 1883, False)
    assert cfg.topic_prefix == "lineside/v1"
    assert (cfg.protocol, cfg.window, cfg.keepalive) == ("5", 100, 30)
    assert cfg.client_id is None
    assert cfg.ssl_context() is None
    tls = config("mqtts://10.0.0.5")
    assert (tls.host, tls.port, tls.tls) == ("10.0.0.5", 8883, True)
    assert config("mqtts://[::1]:9999").port == 9999
    assert config("mqtt://h:1").port == 1


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://h", "scheme"),
        ("mqtt://", "no host"),
        ("mqtt://h:0", "1..65535"),
        ("mqtt://h:65536", "port"),
        ("mqtt://h:abc", "port"),
        ("mqtt://u:p@h", "credentials"),
        ("mqtt://h/topic", "path"),
        ("h:1883", "scheme"),
    ],
)
def test_config_rejects_bad_urls(url: str, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        config(url)


def test_config_rejects_inconsistent_settings(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="mqtts"):
        config("mqtt://h", ca_file=tmp_path / "ca.pem")
    with pytest.raises(ValidationError, match="key_file needs cert_file"):
        config("mqtts://h", key_file=tmp_path / "k.pem")
    with pytest.raises(ValidationError, match="password_file needs username"):
        config("mqtt://h", password_file=tmp_path / "pw")
    with pytest.raises(ValidationError, match="topic_prefix"):
        config("mqtt://h", topic_prefix="a/#")
    with pytest.raises(ValidationError, match="extra"):
        config("mqtt://h", qos=2)
    with pytest.raises(ValidationError):
        config("mqtt://h", protocol="3")


def test_password_is_read_from_file_without_trailing_newline(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret pass\n")
    cfg = config("mqtt://h", username="agent", password_file=pw)
    secret = cfg.password()
    assert secret is not None
    assert secret.get_secret_value() == "s3cret pass"
    assert "s3cret" not in repr(secret)


def test_every_field_has_a_description() -> None:
    for name, info in MqttDestinationConfig.model_fields.items():
        assert info.description, name


# -- delivery -----------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_events_arrive_exactly_on_their_topic(broker: Broker, protocol: str) -> None:
    async with watcher(broker.port) as seen, sink(config(broker.url, protocol=protocol)) as s:
        assert (s.max_batch, s.window) == (16, 7)  # 7 batches of 16: the window of 100
        sent = [envelope(1), envelope(2, "batch.completed"), envelope(3, "scan.rejected")]
        for env in sent:
            await s.send([env])
        await seen.wait_for(lambda w: sum(len(w.on(f"{BASE}/{e.route}")) for e in sent) == 3)
    for env in sent:
        (message,) = seen.on(f"{BASE}/{env.route}")
        assert message.payload == env.payload
        assert message.retain is False
        assert message.qos == 1
        if protocol == "5":
            assert ("id", env.id) in user_properties(message)
        else:
            assert user_properties(message) == []


@pytest.mark.parametrize(("window", "batches"), [(50, (16, 4)), (5, (5, 1)), (1, (1, 1))])
async def test_batches_fill_the_window_with_single_publishes(
    broker: Broker, window: int, batches: tuple[int, int]
) -> None:
    async with sink(config(broker.url, window=window)) as s:
        assert (s.max_batch, s.window) == batches
        assert s.max_batch * s.window >= window  # rounded up, never below the window


async def test_2000_events_in_concurrent_batches_each_with_its_puback(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    cfg = config(broker.url, window=50)
    async with watcher(broker.port, f"{BASE}/#") as seen, sink(cfg) as s:
        slots = asyncio.Semaphore(s.window)

        async def one(batch: list[Envelope]) -> None:
            async with slots:
                await s.send(batch)
                assert not any(entry[1] in batch for entry in s._pending.values()), (
                    "send returned before all its PUBACKs"
                )

        sent = [envelope(seq) for seq in range(1, 2001)]
        async with asyncio.TaskGroup() as group:
            for start in range(0, len(sent), s.max_batch):
                group.create_task(one(sent[start : start + s.max_batch]))
        assert not s._pending
        await seen.wait_for(lambda w: len(w.on(f"{BASE}/goods.received")) == 2000)
    ids = [dict(user_properties(m))["id"] for m in seen.on(f"{BASE}/goods.received")]
    assert sorted(ids) == [e.id for e in sent]  # each exactly once
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


# -- agent state --------------------------------------------------------------------------


async def test_state_online_retained_on_connect_and_offline_on_clean_exit(broker: Broker) -> None:
    async with sink(config(broker.url)):
        async with watcher(broker.port, f"{BASE}/state") as seen:
            await seen.wait_for(lambda w: len(w.messages) == 1)
        (state,) = seen.messages
        assert (state.payload, state.retain) == (ONLINE, True)
    async with watcher(broker.port, f"{BASE}/state") as seen:
        await seen.wait_for(lambda w: len(w.messages) == 1)
    (state,) = seen.messages
    assert (state.payload, state.retain) == (OFFLINE, True)


VICTIM = """
import asyncio, sys
from sync.mqtt import MqttDestinationConfig, MqttSink
from sync.topics import Topics

async def main() -> None:
    cfg = MqttDestinationConfig(name="d", kind="mqtt", url=sys.argv[1], keepalive=5)
    async with MqttSink(cfg, topics=Topics(sys.argv[2]), client_id="victim",
                        online_payload=sys.argv[3].encode(), offline_payload=sys.argv[4].encode()):
        print("connected", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_will_publishes_offline_when_the_agent_vanishes(broker: Broker) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", VICTIM, broker.url, BASE, ONLINE.decode(), OFFLINE.decode(),
        stdout=subprocess.PIPE, env=env, cwd=REPO,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            assert await proc.stdout.readline() == b"connected\n"
        async with watcher(broker.port, f"{BASE}/state") as seen:
            await seen.wait_for(lambda w: [m.payload for m in w.messages] == [ONLINE])
            proc.send_signal(signal.SIGKILL)  # no DISCONNECT, no offline publish: only the will
            await proc.wait()
            await seen.wait_for(lambda w: [m.payload for m in w.messages] == [ONLINE, OFFLINE])
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    async with watcher(broker.port, f"{BASE}/state") as seen:  # and the will is retained
        await seen.wait_for(lambda w: len(w.messages) == 1)
    assert (seen.messages[0].payload, seen.messages[0].retain) == (OFFLINE, True)


# -- failures -----------------------------------------------------------------------------


async def test_connection_refused_is_unavailable() -> None:
    with pytest.raises(SinkUnavailable, match="connection refused"):
        async with sink(config(f"mqtt://127.0.0.1:{free_port()}")):
            pass


async def test_broker_killed_during_a_send_is_unavailable(broker: Broker) -> None:
    assert broker.process is not None
    pid = broker.process.pid
    async with sink(config(broker.url, publish_timeout=90)) as s:
        await s.send([envelope(1)])
        os.kill(pid, signal.SIGSTOP)  # hold the PUBACK back, so the send is surely in flight
        sending = asyncio.create_task(s.send([envelope(2)]))
        try:
            await wait_until(lambda: bool(s._pending), what="the publish to be in flight")
            broker.kill()
            # The lost connection fails the send at once, not after publish_timeout.
            with pytest.raises(SinkUnavailable, match=r"Connection reset|connection lost"):
                await sending
        finally:
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError, SinkUnavailable):
                await sending
        assert not s.connected
        with pytest.raises(SinkUnavailable):  # and so does any send after it
            await s.send([envelope(3)])


async def test_broker_silent_during_send_times_out_as_unavailable(broker: Broker) -> None:
    assert broker.process is not None
    pid = broker.process.pid
    async with sink(config(broker.url, publish_timeout=1, connect_timeout=2)) as s:
        await s.send([envelope(1)])
        os.kill(pid, signal.SIGSTOP)  # the broker hangs: no PUBACK, no disconnect
        try:
            with pytest.raises(SinkUnavailable, match="no PUBACK within 1 s"):
                await s.send([envelope(2)])
            assert not s.connected
        finally:
            os.kill(pid, signal.SIGCONT)


async def test_broker_that_never_answers_connect_is_unavailable(broker: Broker) -> None:
    assert broker.process is not None
    os.kill(broker.process.pid, signal.SIGSTOP)  # accepts TCP (kernel backlog), no CONNACK
    try:
        with pytest.raises(SinkUnavailable, match=r"no CONNACK within 0\.5 s"):
            async with sink(config(broker.url, connect_timeout=0.5)):
                pass
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)


async def test_the_same_sink_reconnects_after_a_broker_restart(broker: Broker) -> None:
    s = sink(config(broker.url))
    async with watcher(broker.port, f"{BASE}/#") as seen:
        async with s:
            await s.send([envelope(1)])
        await seen.wait_for(lambda w: len(w.on(f"{BASE}/goods.received")) == 1)
    broker.stop()
    with pytest.raises(SinkUnavailable, match="connection refused"):
        async with s:
            pass
    broker.start()
    async with watcher(broker.port, f"{BASE}/#") as seen:
        async with s:
            assert s.connected
            await s.send([envelope(2)])
        await seen.wait_for(lambda w: len(w.on(f"{BASE}/goods.received")) == 1)
    assert seen.on(f"{BASE}/goods.received")[0].payload == envelope(2).payload


async def test_acl_denied_topic_is_rejected_with_the_reason(broker: Broker, tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite {BASE}/state\ntopic readwrite {BASE}/goods.received\n")
    broker.stop()
    broker.extra_config = f"{STAY_ROOT}acl_file {acl}\n"
    broker.start()
    async with sink(config(broker.url)) as s:
        await s.send([envelope(1)])
        with pytest.raises(SinkRejected, match=r"Not authorized \(0x87\)") as caught:
            await s.send([envelope(2, "batch.completed")])
        assert caught.value.ids == ("E000002",)
        await s.send([envelope(3)])  # the link is still good: only that event was refused
        # in a batch, only the refused events are named; the others were delivered
        mixed = [envelope(4), envelope(5, "batch.completed"), envelope(6), envelope(7, "bad#")]
        with pytest.raises(SinkRejected, match=r"Not authorized \(0x87\)") as caught:
            await s.send(mixed)
        assert caught.value.ids == ("E000005", "E000007")
        assert "cannot publish to" in str(caught.value)  # paho refused the wildcard topic
        assert not s._pending
        await s.send([envelope(8)])


# -- TLS and authentication ----------------------------------------------------------------


@pytest.fixture
def tls_broker(tmp_path: Path) -> Any:
    pki = make_pki(tmp_path / "pki")
    plain = free_port()
    b = Broker(tmp_path)
    b.extra_config = (
        f"{STAY_ROOT}listener {plain} 127.0.0.1\n"
        f"listener {b.port} 127.0.0.1\ncafile {pki.ca_cert}\ncertfile {pki.server_cert}\n"
        f"keyfile {pki.server_key}\nrequire_certificate true\n"
    )
    b.start()
    try:
        yield b, pki, plain
    finally:
        b.stop()


async def test_mqtts_with_client_certificate(tls_broker: Any) -> None:
    b, pki, plain = tls_broker
    cfg = config(
        f"mqtts://127.0.0.1:{b.port}",
        ca_file=pki.ca_cert,
        cert_file=pki.client_cert,
        key_file=pki.client_key,
    )
    async with watcher(plain, f"{BASE}/#") as seen, sink(cfg) as s:
        await s.send([envelope(1)])
        await seen.wait_for(lambda w: len(w.on(f"{BASE}/goods.received")) == 1)


async def test_mqtts_wrong_ca_is_a_clear_tls_error(tls_broker: Any, tmp_path: Path) -> None:
    b, pki, _ = tls_broker
    other = make_pki(tmp_path / "other", "other-ca")
    cfg = config(
        f"mqtts://localhost:{b.port}",
        ca_file=other.ca_cert,
        cert_file=pki.client_cert,
        key_file=pki.client_key,
    )
    with pytest.raises(SinkUnavailable, match=r"TLS: certificate verify failed \(wrong CA\?\)"):
        async with sink(cfg):
            pass


async def test_mqtts_without_client_certificate_is_refused(tls_broker: Any) -> None:
    b, pki, _ = tls_broker
    with pytest.raises(SinkUnavailable, match="TLS: handshake failed"):
        async with sink(config(f"mqtts://127.0.0.1:{b.port}", ca_file=pki.ca_cert)):
            pass


@pytest.fixture
def auth_broker(tmp_path: Path) -> Any:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(tool).exists():
        pytest.skip("mosquitto_passwd is not installed (it comes with the mosquitto package)")
    passwords = tmp_path / "passwords"
    subprocess.run([tool, "-c", "-b", str(passwords), "agent", "right horse"], check=True)
    b = Broker(
        tmp_path, extra_config=f"{STAY_ROOT}allow_anonymous false\npassword_file {passwords}\n"
    )
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_username_and_password_file(
    auth_broker: Broker, tmp_path: Path, protocol: str
) -> None:
    pw = tmp_path / "agent.pw"
    pw.write_text("right horse\n")
    cfg = config(auth_broker.url, username="agent", password_file=pw, protocol=protocol)
    async with sink(cfg) as s:
        await s.send([envelope(1)])
    pw.write_text("wrong horse\n")  # read again at each connect
    with pytest.raises(SinkUnavailable, match="not authorized"):
        async with sink(cfg):
            pass


class _SlowHandback(concurrent.futures.ThreadPoolExecutor):
    """Runs a job, then holds its result back a while: a loaded machine's executor thread."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        def slow() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                time.sleep(0.3)

        return super().submit(slow)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_refusal_read_before_the_connect_returns_is_named(
    auth_broker: Broker, tmp_path: Path, protocol: str
) -> None:
    """aiomqtt connects in an executor thread while the loop already reads the socket: on a
    loaded machine the broker's refusal and its close are read before the connect call returns.
    The refusal is what the operator sees, not "closed before answering the CONNECT"."""
    pw = tmp_path / "agent.pw"
    pw.write_text("wrong horse\n")
    cfg = config(auth_broker.url, username="agent", password_file=pw, protocol=protocol)
    loop = asyncio.get_running_loop()
    slow = _SlowHandback(max_workers=2)
    loop.set_default_executor(slow)
    try:
        with pytest.raises(SinkUnavailable, match="not authorized"):
            async with sink(cfg):
                pass
    finally:
        slow.shutdown(wait=True)


async def test_missing_password_file_is_unavailable(broker: Broker, tmp_path: Path) -> None:
    cfg = config(broker.url, username="agent", password_file=tmp_path / "nope")
    with pytest.raises(SinkUnavailable, match="cannot load credentials"):
        async with sink(cfg):
            pass


@pytest.mark.parametrize(
    ("protocol", "said"),
    [
        ("5", "the broker has retained messages off"),
        ("3.1.1", f"before answering the CONNECT (its retained will to {BASE}/state: a topic"),
    ],
)
async def test_retained_messages_off_is_said(tmp_path: Path, protocol: str, said: str) -> None:
    off = Broker(tmp_path, extra_config="retain_available false\n")
    off.start()
    try:
        with pytest.raises(SinkUnavailable) as info:
            async with sink(config(off.url, protocol=protocol, connect_timeout=3)):
                pass
    finally:
        off.stop()
    assert said in str(info.value)
