"""The ASGI layers around the status app: security headers, the Host check and the body cap.

Outermost first: `SecurityHeaders` (on every answer, refusals included), `HostGuard` (400 for
any `Host` the page does not answer to, before anything else is looked at) and `BodyCap` (413
for a body over the cap: at once when `Content-Length` says so, else as soon as the bytes read
pass it; nothing past the cap is read, and the connection is closed).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from agent.web.hosts import HostPolicy

    Scope: TypeAlias = MutableMapping[str, Any]
    Message: TypeAlias = MutableMapping[str, Any]
    Receive: TypeAlias = Callable[[], Awaitable[Message]]
    Send: TypeAlias = Callable[[Message], Awaitable[None]]

log = logging.getLogger(__name__)

ASGIApp: TypeAlias = Any  # starlette's ASGI callable, typed loosely at this boundary

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_NO_STORE_PREFIXES = ("/api/", "/healthz", "/metrics")


async def refuse(
    send: Send,
    status: int,
    detail: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer `{"detail": ...}` with `status` and close the connection."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _headers(scope: Scope, name: bytes) -> list[bytes]:
    return [v for k, v in scope.get("headers", []) if k == name]


class SecurityHeaders:
    """Adds the security headers (and no-store on API answers) to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Pass the request on; add the headers to its answer."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = str(scope.get("path", "")).startswith(_NO_STORE_PREFIXES)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(_SECURITY_HEADERS)
                if no_store and not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HostGuard:
    """400 for a request whose `Host` the page does not answer to (see `agent.web.hosts`)."""

    def __init__(self, app: ASGIApp, *, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Refuse the request, or pass it on."""
        if scope["type"] == "http":
            hosts = _headers(scope, b"host")
            host = hosts[0].decode("latin-1") if len(hosts) == 1 else None
            if not self.policy.allows(host):
                log.debug("refused a request for host %r", host)
                await refuse(send, 400, "unknown host: add it to status.allowed_hosts")
                return
        await self.app(scope, receive, send)


class _BodyTooLarge(Exception):
    """The request body passed the cap (raised from `receive`, answered by `BodyCap`)."""


class BodyCap:
    """413 for a request body larger than `max_bytes`, without reading past the cap."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Refuse the request, or pass it on with a `receive` that stops at the cap."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request body too large (at most {self.max_bytes} bytes)"
        lengths = _headers(scope, b"content-length")
        if lengths and (not lengths[0].isdigit() or int(lengths[0]) > self.max_bytes):
            await refuse(send, 413, too_large)  # before a single byte of it is read
            return
        received = 0
        started = False

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, capped_receive, watched_send)
        except _BodyTooLarge:
            if not started:
                await refuse(send, 413, too_large)
