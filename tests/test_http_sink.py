"""HttpSink against a real uvicorn server on a free loopback port (plain HTTP and TLS)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import json
import logging
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from support import free_port, wait_until

from sync.base import Envelope, SinkRejected, SinkUnavailable
from sync.http import HttpDestinationConfig, HttpProbe, HttpSink, retry_after_seconds

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from starlette.requests import Request


def envelopes(count: int, first_seq: int = 1) -> list[Envelope]:
    """`count` envelopes with compact JSON payloads, as the outbox hands them out."""
    out = []
    for seq in range(first_seq, first_seq + count):
        ident = f"01JDQ2V8W7K3M5N9P0R4S6{seq:04d}"
        payload = {
            "id": ident,
            "type": "goods.received",
            "time": "2026-11-24T16:01:02.345Z",
            "site": "plant-a",
            "node": "line-3",
            "seq": seq,
            "source": "scanner:dock-in-1",
            "data": {"raw": f"scan-{seq}", "note": "中文"},
        }
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        out.append(Envelope(seq=seq, id=ident, route="goods.received", payload=body, created=0))
    return out


def http_config(url: str, **extra: Any) -> HttpDestinationConfig:
    return HttpDestinationConfig.model_validate(
        {"name": "erp", "kind": "http", "url": url, **extra}
    )


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    method: str = "POST"


@dataclass
class Endpoint:
    """The receiving system: records every request and answers with queued replies (else 204)."""

    received: list[Received] = field(default_factory=list)
    replies: list[Response] = field(default_factory=list)
    hold: asyncio.Event | None = None

    async def handle(self, request: Request) -> Response:
        self.received.append(Received(dict(request.headers), await request.body(), request.method))
        if self.hold is not None:
            await self.hold.wait()
        if self.replies:
            return self.replies.pop(0)
        return Response(status_code=204)


class TestServer(uvicorn.Server):
    """A uvicorn that leaves the process's signal handlers alone."""

    __test__ = False

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving(endpoint: Endpoint, scheme: str = "http", **ssl: Any) -> AsyncIterator[str]:
    """Run `endpoint` in a real uvicorn in this loop; yield the URL to POST to."""
    app = Starlette(routes=[Route("/events", endpoint.handle, methods=["POST", "OPTIONS"])])
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", **ssl
    )
    server = TestServer(config)
    task = asyncio.create_task(server.serve(), name="test-http-server")
    try:
        await wait_until(lambda: server.started or task.done(), what="uvicorn to start")
        assert server.started, "uvicorn did not start"
        yield f"{scheme}://127.0.0.1:{port}/events"
    finally:
        if endpoint.hold is not None:
            endpoint.hold.set()
        server.should_exit = True
        await task


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[Endpoint, str]]:
    ep = Endpoint()
    async with serving(ep) as url:
        yield ep, url


async def test_batch_is_posted_as_one_json_array_with_idempotency_key(
    endpoint: tuple[Endpoint, str],
) -> None:
    ep, url = endpoint
    batch = envelopes(3, first_seq=7)
    config = http_config(url, headers={"X-Plant": "plant-a"})
    async with HttpSink(config) as sink:
        assert sink.max_batch == 100
        assert sink.window == 1
        await sink.send(batch)
        await sink.send(envelopes(1, first_seq=10))
    assert len(ep.received) == 2
    first = ep.received[0]
    assert first.body == b"[" + b",".join(e.payload for e in batch) + b"]"
    assert json.loads(first.body) == [json.loads(e.payload) for e in batch]
    assert first.headers["content-type"] == "application/json"
    assert first.headers["idempotency-key"] == f"{batch[0].id}..{batch[-1].id}"
    assert first.headers["x-plant"] == "plant-a"
    assert "authorization" not in first.headers
    second = ep.received[1]
    only = envelopes(1, first_seq=10)[0]
    assert second.headers["idempotency-key"] == f"{only.id}..{only.id}"


@pytest.mark.parametrize("status", [429, 503])
async def test_busy_server_is_unavailable_with_retry_after_seconds(
    endpoint: tuple[Endpoint, str], status: int
) -> None:
    ep, url = endpoint
    ep.replies.append(Response("busy", status_code=status, headers={"Retry-After": "7"}))
    async with HttpSink(http_config(url)) as sink:
        with pytest.raises(SinkUnavailable, match=f"HTTP {status}: busy") as caught:
            await sink.send(envelopes(2))
        assert caught.value.retry_after == 7.0
        await sink.send(envelopes(2))  # the same batch goes through once the server is back
    assert len(ep.received) == 2
    assert ep.received[0].body == ep.received[1].body


async def test_retry_after_as_http_date(endpoint: tuple[Endpoint, str]) -> None:
    ep, url = endpoint
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    ep.replies.append(Response(status_code=503, headers={"Retry-After": when}))
    async with HttpSink(http_config(url)) as sink:
        with pytest.raises(SinkUnavailable) as caught:
            await sink.send(envelopes(1))
    assert caught.value.retry_after is not None
    assert 0 < caught.value.retry_after <= 121


def test_retry_after_parsing() -> None:
    now = 1_800_000_000.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("0") == 0.0
    assert retry_after_seconds(" 30 ") == 30.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(email.utils.formatdate(now + 45, usegmt=True), now=now) == 45.0
    assert retry_after_seconds(email.utils.formatdate(now - 45, usegmt=True), now=now) == 0.0


async def test_unprocessable_batch_is_rejected_with_status_and_body_excerpt(
    endpoint: tuple[Endpoint, str],
) -> None:
    ep, url = endpoint
    body = "field 'lot' missing " + "x" * 300
    ep.replies.append(Response(body, status_code=422))
    async with HttpSink(http_config(url)) as sink:
        with pytest.raises(SinkRejected) as caught:
            await sink.send(envelopes(2))
    assert str(caught.value) == f"HTTP 422: {body[:200]}"
    assert caught.value.ids is None  # the whole batch


async def test_server_down_is_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}/events"
    async with HttpSink(http_config(url)) as sink:
        with pytest.raises(SinkUnavailable, match="ConnectError"):
            await sink.send(envelopes(1))


async def test_server_that_never_answers_times_out(endpoint: tuple[Endpoint, str]) -> None:
    ep, url = endpoint
    ep.hold = asyncio.Event()
    async with HttpSink(http_config(url, timeout_s=0.3)) as sink:
        with pytest.raises(SinkUnavailable, match="timeout"):
            await sink.send(envelopes(1))


async def test_bearer_token_from_file_is_sent_and_never_logged(
    endpoint: tuple[Endpoint, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ep, url = endpoint
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    caplog.set_level(logging.DEBUG)  # ours, httpx's and httpcore's logs
    async with HttpSink(http_config(url, bearer_token_file=token_file)) as sink:
        await sink.send(envelopes(1))
    assert ep.received[0].headers["authorization"] == "Bearer s3cret-token"
    assert "s3cret" not in caplog.text


async def test_basic_auth_password_from_file(
    endpoint: tuple[Endpoint, str], tmp_path: Path
) -> None:
    ep, url = endpoint
    password_file = tmp_path / "password"
    password_file.write_text("p@ss:word\n")
    config = http_config(url, username="lineside", password_file=password_file)
    async with HttpSink(config) as sink:
        await sink.send(envelopes(1))
    scheme, _, encoded = ep.received[0].headers["authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode() == "lineside:p@ss:word"


async def test_missing_credential_file_is_unavailable_at_start(tmp_path: Path) -> None:
    config = http_config("http://127.0.0.1:1/events", bearer_token_file=tmp_path / "nope")
    with pytest.raises(SinkUnavailable, match="credential"):
        async with HttpSink(config):
            pass


async def test_probe_says_whether_the_receiver_takes_the_credentials(
    endpoint: tuple[Endpoint, str], tmp_path: Path
) -> None:
    ep, url = endpoint
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    ep.replies.append(Response(status_code=401))
    async with HttpSink(http_config(url, bearer_token_file=token_file)) as sink:
        refused = await sink.probe()
        taken = await sink.probe()
    assert refused == HttpProbe(401)
    assert not refused.authenticated
    assert taken == HttpProbe(204)
    assert taken.authenticated
    assert [(r.method, r.body) for r in ep.received] == [("OPTIONS", b"")] * 2, "no events sent"
    assert {r.headers["authorization"] for r in ep.received} == {"Bearer s3cret-token"}


async def test_probe_of_a_receiver_that_is_down_says_why() -> None:
    url = f"http://127.0.0.1:{free_port()}/events"
    with pytest.raises(SinkUnavailable, match="not open"):
        await HttpSink(http_config(url)).probe()
    async with HttpSink(http_config(url)) as sink:
        probe = await sink.probe()
    assert probe.status is None
    assert not probe.authenticated
    assert probe.failure is not None
    assert "ConnectError" in probe.failure


def test_config_is_validated(tmp_path: Path) -> None:
    for bad in (
        {"url": "ftp://erp.local/in"},
        {"url": "erp.local/in"},
        {"url": "http://erp.local/in", "surprise": 1},
        {"url": "http://erp.local/in", "key_file": str(tmp_path / "k")},
        {"url": "http://erp.local/in", "username": "u"},
        {"url": "http://erp.local/in", "headers": {"Idempotency-Key": "x"}},
        {
            "url": "http://erp.local/in",
            "bearer_token_file": "t",
            "username": "u",
            "password_file": "p",
        },
    ):
        with pytest.raises(ValidationError):
            HttpDestinationConfig.model_validate({"name": "erp", "kind": "http", **bad})
    config = http_config("https://erp.local/api/trace-events", types=["batch.completed"])
    assert config.batch_size == 100
    assert config.timeout_s == 10
    assert not config.insecure_skip_verify


# --- TLS -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def issue(pki_dir: Path, name: str, ca: Path, ca_key: Path, extensions: str) -> tuple[Path, Path]:
    """A P-256 key and a certificate for it signed by `ca`."""
    key, csr, cert = pki_dir / f"{name}.key", pki_dir / f"{name}.csr", pki_dir / f"{name}.pem"
    ext = pki_dir / f"{name}.ext"
    ext.write_text(extensions)
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={name}")  # fmt: skip
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-out", cert, "-days", "2", "-sha256", "-extfile", ext)  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = d / "ca.pem", d / "ca.key"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2", "-sha256",
            "-subj", "/CN=Lineside Test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    server_cert, server_key = issue(
        d,
        "server",
        ca,
        ca_key,
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "authorityKeyIdentifier=keyid\n",
    )
    client_cert, client_key = issue(
        d,
        "line-3",
        ca,
        ca_key,
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=clientAuth\nauthorityKeyIdentifier=keyid\n",
    )
    return Pki(ca, server_cert, server_key, client_cert, client_key)


async def test_https_with_custom_ca_and_client_certificate(pki: Pki) -> None:
    ep = Endpoint()
    tls = {
        "ssl_certfile": str(pki.server_cert),
        "ssl_keyfile": str(pki.server_key),
        "ssl_ca_certs": str(pki.ca),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }
    async with serving(ep, "https", **tls) as url:
        config = http_config(
            url, ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key
        )
        async with HttpSink(config) as sink:
            await sink.send(envelopes(2))
    assert len(ep.received) == 1


async def test_https_without_the_ca_fails_with_a_clear_tls_error(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    ep = Endpoint()
    tls = {"ssl_certfile": str(pki.server_cert), "ssl_keyfile": str(pki.server_key)}
    async with serving(ep, "https", **tls) as url:
        async with HttpSink(http_config(url)) as sink:
            with pytest.raises(SinkUnavailable, match="TLS: certificate verify failed"):
                await sink.send(envelopes(1))
        assert ep.received == []
        # Explicitly insecure works, and says so in the log.
        caplog.set_level(logging.WARNING, logger="sync")
        async with HttpSink(http_config(url, insecure_skip_verify=True)) as sink:
            await sink.send(envelopes(1))
        assert "verification is OFF" in caplog.text
    assert len(ep.received) == 1


async def test_probe_names_a_tls_failure(pki: Pki) -> None:
    ep = Endpoint()
    tls = {"ssl_certfile": str(pki.server_cert), "ssl_keyfile": str(pki.server_key)}
    async with serving(ep, "https", **tls) as url, HttpSink(http_config(url)) as sink:
        probe = await sink.probe()
    assert probe.status is None
    assert probe.failure is not None
    assert probe.failure.startswith("TLS: certificate verify failed")
    assert ep.received == []
