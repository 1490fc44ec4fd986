"""The status page's FastAPI app: page, read API, live stream, metrics, login and actions.

Reads are open to anyone who can reach the port (the page is for the people at the line).
Actions need the admin password: a session cookie, the session's CSRF token in `X-CSRF-Token`
and a same-origin request; without a configured password they are refused with 403. Every
response carries a strict Content-Security-Policy; the page uses no inline script or style.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from agent.web import auth
from agent.web.metrics import CONTENT_TYPE
from agent.web.view import AgentStatus, QuarantinedEvent, StatusView

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping

    from pydantic import SecretStr

    from agent.web.metrics import Metrics

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
STREAM_MIN_INTERVAL_S = 0.5  # at most ~2 pushes a second, however busy the line is
STREAM_HEARTBEAT_S = 15.0

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

_status_json = TypeAdapter(AgentStatus)
_quarantine_json = TypeAdapter(list[QuarantinedEvent])

ASGIApp = Any  # starlette's ASGI callable, typed loosely at this boundary
_M = TypeVar("_M", bound=BaseModel)


class _SecurityHeaders:
    """ASGI middleware adding the security headers (and no-store on API answers) everywhere."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = str(scope.get("path", "")).startswith(_NO_STORE_PREFIXES)

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(_SECURITY_HEADERS)
                if no_store and not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoginRequest(_Request):
    """Body of `POST /api/login`."""

    password: str = Field(max_length=1024, description="The admin password")


class WorkOrderRequest(_Request):
    """Body of `POST /api/actions/work-order`; all fields null clears the work order."""

    work_order: str | None = Field(None, max_length=64, description="Work order number")
    gtin: str | None = Field(None, max_length=14, description="Product GTIN (14 digits)")
    lot: str | None = Field(None, max_length=20, description="Lot number (GS1 AI 10)")
    planned_qty: int | None = Field(None, ge=1, description="Planned quantity of the order")


class AlarmAckRequest(_Request):
    """Body of `POST /api/actions/alarm-ack`."""

    alarm_id: str = Field(max_length=128, description="Id of the alarm to acknowledge")


class SeqRequest(_Request):
    """Body of the resend and quarantine actions: a destination and an event sequence number."""

    destination: str = Field(max_length=128, description="Destination name from the config")
    seq: int = Field(ge=1, description="Event sequence number (the envelope's seq)")


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


async def _next_change(
    view: StatusView, seen: int, closing: asyncio.Event, wait_s: float
) -> int | None:
    """Wait for the next change counter; None after `wait_s` or when the server is closing."""
    change = asyncio.ensure_future(view.wait_changed(seen))
    stop = asyncio.ensure_future(closing.wait())
    try:
        done, _ = await asyncio.wait({change, stop}, timeout=wait_s, return_when="FIRST_COMPLETED")
    finally:
        change.cancel()
        stop.cancel()
        await asyncio.gather(change, stop, return_exceptions=True)
    if change in done and not change.cancelled():
        return change.result()
    return None


async def _status_stream(view: StatusView, closing: asyncio.Event) -> AsyncIterator[str]:
    """Server-sent events: the status JSON whenever it changes (rate-limited), and heartbeats."""
    seen = -1
    yield "retry: 2000\n\n"
    while not closing.is_set():
        change = await _next_change(view, seen, closing, STREAM_HEARTBEAT_S)
        if closing.is_set():
            return
        if change is None:
            yield ": heartbeat\n\n"
            continue
        seen = change
        data = _status_json.dump_json(view.status()).decode()
        yield f"event: status\ndata: {data}\n\n"
        try:
            async with asyncio.timeout(STREAM_MIN_INTERVAL_S):
                await closing.wait()
        except TimeoutError:
            pass


class _StatusApi:
    """The endpoints, over one view; `create_app` registers its methods as routes."""

    def __init__(
        self,
        view: StatusView,
        *,
        metrics: Metrics,
        password: SecretStr | None,
        audit_log: Path,
        version: str,
        session_ttl_s: float,
        login_delay_s: float,
    ) -> None:
        self.view = view
        self.metrics = metrics
        self.version = version
        self.closing = asyncio.Event()
        self.sessions = auth.Sessions(ttl_s=session_ttl_s)
        self.guard = (
            None if password is None else auth.LoginGuard(password, base_delay_s=login_delay_s)
        )
        self.audit = auth.AuditLog(audit_log)

    async def page(self) -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def healthz(self) -> JSONResponse:
        health = self.view.status().health
        if health.ok:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "down", "reasons": health.reasons}, status_code=503)

    async def status(self) -> Response:
        return Response(_status_json.dump_json(self.view.status()), media_type="application/json")

    async def stream(self) -> StreamingResponse:
        return StreamingResponse(
            _status_stream(self.view, self.closing),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def events(
        self,
        limit: Annotated[int, Query(ge=1, le=1000, description="How many, newest first")] = 100,
        event_type: Annotated[
            str | None, Query(alias="type", max_length=64, description="Only this event type")
        ] = None,
    ) -> list[dict[str, Any]]:
        return await self.view.events(limit=limit, type=event_type)

    async def trace(self, code: str) -> dict[str, Any]:
        try:
            chain = await self.view.trace(code)
        except NotImplementedError as exc:
            raise HTTPException(501, "trace queries are not available yet") from exc
        if chain is None:
            raise HTTPException(404, "unknown code")
        return chain

    async def quarantine(self) -> Response:
        parked = await self.view.quarantine()
        return Response(_quarantine_json.dump_json(parked), media_type="application/json")

    async def metrics_text(self) -> Response:
        self.metrics.refresh(self.view.status())
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    async def session_state(self, request: Request) -> dict[str, Any]:
        session = self.sessions.find(request.cookies.get(auth.SESSION_COOKIE))
        return {
            "logged_in": session is not None,
            "csrf_token": session.csrf_token if session else None,
            "actions_enabled": self.guard is not None,
            "version": self.version,
        }

    async def login(self, request: Request) -> JSONResponse:
        client = auth.client_address(request)
        if self.guard is None:
            raise HTTPException(403, "actions disabled")
        if not auth.same_origin(request):
            self.audit.record("login", {}, client, "refused: cross-origin request")
            raise HTTPException(403, "cross-origin request refused")
        body = await _parse(request, LoginRequest)
        if not self.guard.matches(body.password):
            delay = self.guard.delay_after_failure(client)
            self.metrics.login_failed()
            self.audit.record("login", {}, client, "failed")
            log.warning("failed login from %s", client)
            await asyncio.sleep(delay)  # slows guessing down; grows with each failure
            raise HTTPException(401, "wrong password")
        self.guard.succeeded(client)
        session = self.sessions.create(client)
        self.audit.record("login", {}, client, "ok")
        log.info("login from %s", client)
        response = JSONResponse({"csrf_token": session.csrf_token})
        response.set_cookie(
            auth.SESSION_COOKIE,
            session.token,
            max_age=int(self.sessions.ttl_s),
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> JSONResponse:
        if not auth.same_origin(request):
            raise HTTPException(403, "cross-origin request refused")
        token = request.cookies.get(auth.SESSION_COOKIE)
        session = self.sessions.find(token)
        if session is not None:
            if not auth.csrf_ok(request, session):
                raise HTTPException(403, "missing or wrong CSRF token")
            self.sessions.end(token)
            self.audit.record("logout", {}, auth.client_address(request), "ok")
        response = JSONResponse({"ok": True})
        response.delete_cookie(auth.SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    async def _action(
        self,
        request: Request,
        action: str,
        model: type[_M],
        call: Callable[[_M], Awaitable[None]],
    ) -> dict[str, bool]:
        """Guard, parse, run and audit one control action."""
        client = auth.client_address(request)

        def refuse(status: int, message: str, args: dict[str, Any] | None = None) -> HTTPException:
            self.audit.record(action, args or {}, client, f"refused: {message}")
            log.info("action %s from %s refused: %s", action, client, message)
            return HTTPException(status, message)

        if self.guard is None:
            raise refuse(403, "actions disabled")
        if not auth.same_origin(request):
            raise refuse(403, "cross-origin request refused")
        session = self.sessions.find(request.cookies.get(auth.SESSION_COOKIE))
        if session is None:
            raise refuse(401, "login required")
        if not auth.csrf_ok(request, session):
            raise refuse(403, "missing or wrong CSRF token")
        try:
            body = model.model_validate_json(await request.body())
        except ValidationError as exc:
            raise refuse(400, _validation_message(exc)) from exc
        args = body.model_dump()
        try:
            await call(body)
        except ValueError as exc:
            raise refuse(400, str(exc), args) from exc
        self.audit.record(action, args, client, "ok")
        log.info("action %s from %s: %s", action, client, args)
        return {"ok": True}

    async def work_order(self, request: Request) -> dict[str, bool]:
        async def call(b: WorkOrderRequest) -> None:
            await self.view.set_work_order(b.work_order, b.gtin, b.lot, b.planned_qty)

        return await self._action(request, "work-order", WorkOrderRequest, call)

    async def alarm_ack(self, request: Request) -> dict[str, bool]:
        async def call(b: AlarmAckRequest) -> None:
            await self.view.acknowledge_alarm(b.alarm_id)

        return await self._action(request, "alarm-ack", AlarmAckRequest, call)

    async def resend(self, request: Request) -> dict[str, bool]:
        async def call(b: SeqRequest) -> None:
            await self.view.resend_from(b.destination, b.seq)

        return await self._action(request, "resend", SeqRequest, call)

    async def release(self, request: Request) -> dict[str, bool]:
        async def call(b: SeqRequest) -> None:
            await self.view.release(b.destination, b.seq)

        return await self._action(request, "quarantine-release", SeqRequest, call)

    async def drop(self, request: Request) -> dict[str, bool]:
        async def call(b: SeqRequest) -> None:
            await self.view.drop(b.destination, b.seq)

        return await self._action(request, "quarantine-drop", SeqRequest, call)


async def _parse(request: Request, model: type[_M]) -> _M:
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise HTTPException(400, _validation_message(exc)) from exc


def create_app(
    view: StatusView,
    *,
    metrics: Metrics,
    password: SecretStr | None,
    audit_log: Path,
    version: str,
    session_ttl_s: float = 8 * 3600,
    login_delay_s: float = 0.25,
) -> FastAPI:
    """Build the status app over `view`; `password` None disables the control actions.

    `app.state.closing` is the event that ends live streams; `StatusServer` sets it at shutdown.
    """
    api = _StatusApi(
        view,
        metrics=metrics,
        password=password,
        audit_log=audit_log,
        version=version,
        session_ttl_s=session_ttl_s,
        login_delay_s=login_delay_s,
    )
    app = FastAPI(
        title="Lineside status", version=version, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.closing = api.closing
    app.add_middleware(_SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    routes: list[tuple[str, str, Callable[..., Awaitable[Any]]]] = [
        ("GET", "/", api.page),
        ("GET", "/healthz", api.healthz),
        ("GET", "/metrics", api.metrics_text),
        ("GET", "/api/status", api.status),
        ("GET", "/api/stream", api.stream),
        ("GET", "/api/events", api.events),
        ("GET", "/api/trace/{code:path}", api.trace),
        ("GET", "/api/quarantine", api.quarantine),
        ("GET", "/api/session", api.session_state),
        ("POST", "/api/login", api.login),
        ("POST", "/api/logout", api.logout),
        ("POST", "/api/actions/work-order", api.work_order),
        ("POST", "/api/actions/alarm-ack", api.alarm_ack),
        ("POST", "/api/actions/resend", api.resend),
        ("POST", "/api/actions/quarantine/release", api.release),
        ("POST", "/api/actions/quarantine/drop", api.drop),
    ]
    for method, path, endpoint in routes:
        app.add_api_route(path, endpoint, methods=[method])
    return app
