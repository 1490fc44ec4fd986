"""Host and Origin checks and the status server's bounds, on a real uvicorn (issue 11, 3-5).

DNS rebinding: any Host the page does not answer to gets 400 on every path, and an Origin must
match the request's scheme, host and port. Bounds: bodies over the cap are 413 before they are
read, requests that do not arrive in time are closed, connections are capped (the longest-waiting
one makes room), clients that stop reading are cut off, live streams are capped and share one
serialised snapshot per tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from pydantic import SecretStr
from support import wait_until
from web_fake import FakeView, serving

from agent.web import Metrics, create_app
from agent.web.app import MAX_BODY_BYTES
from agent.web.audit import AuditLog
from agent.web.hosts import HostPolicy, split_host

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fastapi import FastAPI

    from agent.web import StatusServer

PASSWORD = "correct horse battery staple"
HALF_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # the blank line never comes


def make_app(tmp_path: Any, view: FakeView | None = None, **options: Any) -> FastAPI:
    return create_app(
        view or FakeView.healthy(),
        metrics=Metrics(),
        password=SecretStr(PASSWORD),
        audit=AuditLog(tmp_path / "audit.jsonl"),
        version="t",
        hosts=HostPolicy.default("127.0.0.1", ["lineside.test"]),
        login_block_s=0.0,
        **options,
    )


@contextlib.asynccontextmanager
async def raw(server: StatusServer) -> AsyncIterator[tuple[asyncio.StreamReader, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 10) -> bytes:  # noqa: ASYNC109
    """Everything the server sent until it closed the connection (fails after `timeout`)."""
    got = b""
    async with asyncio.timeout(timeout):
        with contextlib.suppress(ConnectionResetError):
            while chunk := await reader.read(65536):
                got += chunk
    return got


# --- Host and Origin ---------------------------------------------------------------------

FOREIGN = {"Host": "evil.example", "Origin": "http://evil.example"}


@pytest.mark.parametrize(
    "path",
    ["/", "/healthz", "/metrics", "/api/status", "/api/events", "/api/stream", "/static/app.js"],
)
async def test_a_foreign_host_gets_400_on_every_path(tmp_path: Any, path: str) -> None:
    async with (
        serving(make_app(tmp_path)) as server,
        httpx.AsyncClient(base_url=server.url.rstrip("/"), timeout=10) as c,
    ):
        r = await c.get(path, headers=FOREIGN)
        assert r.status_code == 400, r.text
        assert "allowed_hosts" in r.json()["detail"]
        assert r.headers["x-frame-options"] == "DENY"


async def test_a_foreign_host_cannot_log_in(tmp_path: Any) -> None:
    async with (
        serving(make_app(tmp_path)) as server,
        httpx.AsyncClient(base_url=server.url.rstrip("/"), timeout=10) as c,
    ):
        r = await c.post("/api/login", json={"password": PASSWORD}, headers=FOREIGN)
        assert r.status_code == 400
        assert "set-cookie" not in r.headers


async def test_addresses_and_listed_names_are_served(tmp_path: Any) -> None:
    async with serving(make_app(tmp_path)) as server:
        port = server.port
        async with httpx.AsyncClient(base_url=server.url.rstrip("/"), timeout=10) as c:
            for host in (
                f"127.0.0.1:{port}",
                f"localhost:{port}",
                "LOCALHOST.",
                "lineside.test",
                f"[::1]:{port}",
                "10.20.30.40:8080",  # behind NAT or port forwarding: the address the browser used
            ):
                r = await c.get("/healthz", headers={"Host": host})
                assert r.status_code == 200, host


@pytest.mark.parametrize(
    "head",
    [
        b"GET /healthz HTTP/1.0\r\n\r\n",  # no Host at all
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: evil@127.0.0.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:99999\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: ::1\r\n\r\n",
    ],
)
async def test_missing_doubled_or_malformed_host_is_400(tmp_path: Any, head: bytes) -> None:
    async with serving(make_app(tmp_path)) as server, raw(server) as (reader, writer):
        writer.write(head)
        answer = await closed_by_server(reader)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


async def test_origin_must_match_scheme_host_and_port(tmp_path: Any) -> None:
    app = make_app(tmp_path)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://lineside.test") as c:

        async def login(origin: str) -> int:
            r = await c.post("/api/login", json={"password": PASSWORD}, headers={"Origin": origin})
            return r.status_code

        assert await login("https://lineside.test") == 403, "scheme"
        assert await login("http://lineside.test:8080") == 403, "port"
        assert await login("http://other.test") == 403, "host"
        assert await login("null") == 403
        assert await login("http://LINESIDE.test:80") == 200, "the default port is the same origin"


def test_host_header_parsing() -> None:
    assert split_host("Line3.Plant.Local.:8080") == ("line3.plant.local", 8080)
    assert split_host("[::1]") == ("::1", None)
    assert split_host("10.0.0.5") == ("10.0.0.5", None)
    for bad in ("", ":80", "a b", "x:", "x:0x50", "[evil.example]:80", "[::1]x", "evil.example/"):
        assert split_host(bad) is None, bad


# --- bodies ------------------------------------------------------------------------------


async def test_a_huge_body_is_413_before_it_is_sent(tmp_path: Any) -> None:
    async with serving(make_app(tmp_path)) as server, raw(server) as (reader, writer):
        writer.write(
            b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 150000000\r\n\r\n" + b"x" * 1000
        )
        answer = await closed_by_server(reader)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"connection: close" in answer.lower()


async def test_a_chunked_body_is_cut_off_at_the_cap(tmp_path: Any) -> None:
    async with serving(make_app(tmp_path)) as server, raw(server) as (reader, writer):
        writer.write(
            b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 4096
        for _ in range(5):  # 20 KiB, past the 16 KiB cap; the end of the body never comes
            writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        answer = await closed_by_server(reader)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


async def test_a_body_up_to_the_cap_reaches_the_endpoint(tmp_path: Any) -> None:
    async with (
        serving(make_app(tmp_path)) as server,
        httpx.AsyncClient(base_url=server.url.rstrip("/"), timeout=10) as c,
    ):
        origin = {"Origin": server.url.rstrip("/")}
        padding = MAX_BODY_BYTES - len(json.dumps({"password": ""}))
        at_cap = json.dumps({"password": "x" * padding})  # valid JSON, over the model's limit
        assert len(at_cap) == MAX_BODY_BYTES
        r = await c.post("/api/login", content=at_cap, headers=origin)
        assert r.status_code == 400, r.text
        r = await c.post("/api/login", content=at_cap + " ", headers=origin)
        assert r.status_code == 413, r.text


# --- connections -------------------------------------------------------------------------


async def test_a_half_sent_request_is_closed(tmp_path: Any) -> None:
    async with serving(make_app(tmp_path), request_timeout_s=0.3) as server:
        async with raw(server) as (reader, writer):
            writer.write(HALF_HEAD)
            assert await closed_by_server(reader) == b""
        async with raw(server) as (reader, writer):  # a head, then a body that trickles
            writer.write(
                b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
            assert await closed_by_server(reader) == b""
        async with raw(server) as (reader, writer):  # kept alive: the next request has its own
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            writer.write(HALF_HEAD)
            await closed_by_server(reader)


async def test_connections_are_capped_and_the_longest_waiting_makes_room(tmp_path: Any) -> None:
    async with serving(make_app(tmp_path, max_streams=4), max_connections=4) as server:
        waiting = []
        for _ in range(4):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(HALF_HEAD)
            await writer.drain()
            waiting.append((reader, writer))
        try:
            async with httpx.AsyncClient(base_url=server.url.rstrip("/"), timeout=10) as c:
                assert (await c.get("/healthz")).status_code == 200
                assert await closed_by_server(waiting[0][0]) == b"", "the oldest made room"
                # Four live streams: connections that wait for nobody; one more is refused.
                async with contextlib.AsyncExitStack() as streams:
                    for _ in range(4):
                        s = await streams.enter_async_context(c.stream("GET", "/api/stream"))
                        assert s.status_code == 200
                    async with raw(server) as (reader, writer):
                        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                        answer = await closed_by_server(reader)
                        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        finally:
            for _, writer in waiting:
                writer.close()


async def test_a_client_that_stops_reading_is_cut_off(tmp_path: Any) -> None:
    view = FakeView.healthy()
    for i in range(1000):
        view.add_scan(f"{i:06d}" + "x" * 8000)
    async with serving(make_app(tmp_path, view), stalled_reader_s=0.3) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            writer.write(b"GET /api/events?limit=1000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            length = int(
                next(
                    line
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ).split(b":")[1]
            )
            # Now read nothing: the server's buffers fill, and it gives up on us by itself.
            await wait_until(lambda: server.connections == 0, what="the stalled client cut off")
            body = await closed_by_server(reader)
            assert len(body) < length, "the whole answer arrived: the client was not cut off"
        finally:
            writer.close()


# --- live streams ------------------------------------------------------------------------


async def first_status(lines: AsyncIterator[str]) -> dict[str, Any]:
    async for line in lines:
        if line.startswith("data: "):
            data: dict[str, Any] = json.loads(line.removeprefix("data: "))
            return data
    raise AssertionError("stream ended")


async def test_live_streams_are_capped(tmp_path: Any) -> None:
    app = make_app(tmp_path, max_streams=3)
    async with (
        serving(app) as server,
        httpx.AsyncClient(base_url=server.url.rstrip("/"), timeout=10) as c,
    ):
        async with contextlib.AsyncExitStack() as streams:
            lines = []  # kept: a line iterator collected by the GC closes its stream
            for _ in range(3):
                s = await streams.enter_async_context(c.stream("GET", "/api/stream"))
                lines.append(s.aiter_lines())
                await first_status(lines[-1])
            refused = await c.get("/api/stream")
            assert refused.status_code == 503
            assert int(refused.headers["retry-after"]) >= 1
        await wait_until(lambda: app.state.feed.streams == 0, what="the streams closed")
        async with c.stream("GET", "/api/stream") as again:  # a slot given back is reusable
            assert again.status_code == 200
            await first_status(again.aiter_lines())


async def test_streams_work_again_when_the_server_is_started_again(tmp_path: Any) -> None:
    """The runtime restarts a failed `status` task on the same app: its feed opens again."""
    app = make_app(tmp_path)
    for _ in range(2):
        async with (
            serving(app) as server,
            httpx.AsyncClient(base_url=server.url.rstrip("/"), timeout=10) as c,
            c.stream("GET", "/api/stream") as stream,
        ):
            assert stream.status_code == 200
            assert (await first_status(stream.aiter_lines()))["agent"]["node"] == "line-3"


async def test_one_snapshot_per_tick_for_all_streams(tmp_path: Any) -> None:
    view = FakeView.healthy()
    async with serving(make_app(tmp_path, view)) as server:
        limits = httpx.Limits(max_connections=30)
        async with (
            httpx.AsyncClient(base_url=server.url.rstrip("/"), timeout=10, limits=limits) as c,
            contextlib.AsyncExitStack() as streams,
        ):
            lines = []
            for _ in range(20):
                s = await streams.enter_async_context(c.stream("GET", "/api/stream"))
                lines.append(s.aiter_lines())
            await asyncio.gather(*(first_status(it) for it in lines))
            view.snapshots = 0
            view.add_scan("0950110153000310LIVE")
            seen = await asyncio.gather(*(first_status(it) for it in lines))
            assert all(s["recent_scans"][0]["raw"] == "0950110153000310LIVE" for s in seen)
            assert view.snapshots == 1, "each stream built the snapshot itself"
