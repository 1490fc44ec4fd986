"""The status page's FastAPI app: page, read API, live stream, metrics, login and actions.

Reads are open to anyone who can reach the port (the page is for the people at the line).
Actions need the admin password: a session cookie, the session's CSRF token in `X-CSRF-Token`
and a same-origin request; without a configured password they are refused with 403. Every
response carries a strict Content-Security-Policy; the page uses no inline script or style.
Requests for a `Host` the page does not answer to get 400 and bodies over the cap 413, before
any endpoint sees them (`agent.web.middleware`); login guessing is throttled (`LoginGuard`).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from agent.text import LotText, Quantity, WorkOrderText  # noqa: TC001 (pydantic needs them)
from agent.web.auth import (
    SESSION_COOKIE,
    THROTTLED,
    LoginGuard,
    Sessions,
    client_address,
    csrf_ok,
    logged_out,
    login_verdict,
    same_origin,
)
from agent.web.feed import StatusFeed
from agent.web.hosts import HostPolicy
from agent.web.metrics import CONTENT_TYPE
from agent.web.middleware import CONTENT_SECURITY_POLICY, BodyCap, HostGuard, SecurityHeaders
from agent.web.view import AgentStatus, QuarantinedEvent, StatusView

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from pydantic import SecretStr
    from starlette.responses import StreamingResponse

    from agent.web.audit import AuditLog
    from agent.web.metrics import Metrics

__all__ = ["CONTENT_SECURITY_POLICY", "create_app"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY_BYTES = 16 * 1024  # the largest body the API takes is a work order of a few hundred
TRACE_QUERIES_AT_ONCE = 4  # each opens its own read connection (files and a thread)

_status_json = TypeAdapter(AgentStatus)
_quarantine_json = TypeAdapter(list[QuarantinedEvent])

_M = TypeVar("_M", bound=BaseModel)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoginRequest(_Request):
    """Body of `POST /api/login`."""

    password: str = Field(max_length=1024, description="The admin password")


class WorkOrderRequest(_Request):
    """Body of `POST /api/actions/work-order`; all fields but `line` null clears the work order.

    The same text rule as the MES command (`agent.text`): printable, the same caps, and a
    planned quantity that is a JSON integer.
    """

    work_order: WorkOrderText | None = Field(None, description="Work order number (1..64)")
    gtin: str | None = Field(None, max_length=14, description="Product GTIN (14 digits)")
    lot: LotText | None = Field(None, description="Lot number (GS1 AI 10: 1..20 of set 82)")
    planned_qty: Quantity | None = Field(None, description="Planned quantity, 1..10**9")
    line: str | None = Field(
        None, max_length=64, description="The line it is for (required with several lines)"
    )


class AlarmAckRequest(_Request):
    """Body of `POST /api/actions/alarm-ack`."""

    alarm_id: str = Field(max_length=128, description="Id of the alarm to acknowledge")


class SeqRequest(_Request):
    """Body of the resend and quarantine actions: a destination and an event sequence number."""

    destination: str = Field(max_length=128, description="Destination name from the config")
    seq: int = Field(ge=1, description="Event sequence number (the envelope's seq)")


class LabelDecisionRequest(_Request):
    """Body of the label action: reprint or void a print job that was never confirmed."""

    printer: str = Field(max_length=128, description="Printer id from the config")
    job: int = Field(ge=1, description="The print job's number")
    action: Literal["reprint", "void"] = Field(description="reprint or void")


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


class _StatusApi:
    """The endpoints, over one view; `create_app` registers its methods as routes."""

    def __init__(
        self,
        view: StatusView,
        *,
        metrics: Metrics,
        password: SecretStr | None,
        audit: AuditLog,
        version: str,
        feed: StatusFeed,
        session_ttl_s: float,
        login_block_s: float,
        login_failures_per_minute: int,
    ) -> None:
        self.view = view
        self.metrics = metrics
        self.version = version
        self.feed = feed
        self.sessions = Sessions(ttl_s=session_ttl_s)
        self.guard = (
            None
            if password is None
            else LoginGuard(
                password, block_s=login_block_s, failures_per_minute=login_failures_per_minute
            )
        )
        self.audit = audit
        self.trace_slots = asyncio.Semaphore(TRACE_QUERIES_AT_ONCE)

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
        return self.feed.response()

    async def events(
        self,
        limit: Annotated[int, Query(ge=1, le=1000, description="How many, newest first")] = 100,
        event_type: Annotated[
            str | None, Query(alias="type", max_length=64, description="Only this event type")
        ] = None,
    ) -> list[dict[str, Any]]:
        return await self.view.events(limit=limit, type=event_type)

    async def trace(self, code: str) -> dict[str, Any]:
        async with self.trace_slots:
            chain = await self.view.trace(code)
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
        session = self.sessions.find(request.cookies.get(SESSION_COOKIE))
        return {
            "logged_in": session is not None,
            "csrf_token": session.csrf_token if session else None,
            "actions_enabled": self.guard is not None,
            "version": self.version,
        }

    async def login(self, request: Request) -> JSONResponse:
        client = client_address(request)
        if self.guard is None:
            raise HTTPException(403, "actions disabled")
        if not same_origin(request):
            self.audit.record("login", {}, client, "refused: cross-origin request")
            raise HTTPException(403, "cross-origin request refused")
        body = await _parse(request, LoginRequest)

        def said(outcome: str) -> None:
            if outcome == THROTTLED:
                self.metrics.login_refused_throttled()
            elif outcome == "failed":
                self.metrics.login_failed()
            self.audit.record("login", {}, client, outcome)

        return login_verdict(request, self.guard, self.sessions, body.password, said=said)

    async def logout(self, request: Request) -> JSONResponse:
        response, ended = logged_out(request, self.sessions)
        if ended:
            self.audit.record("logout", {}, client_address(request), "ok")
        return response

    async def _action(
        self,
        request: Request,
        action: str,
        model: type[_M],
        call: Callable[[_M], Awaitable[None]],
    ) -> dict[str, bool]:
        """Guard, parse, run and audit one control action."""
        client = client_address(request)

        def refuse(status: int, message: str, args: dict[str, Any] | None = None) -> HTTPException:
            self.audit.record(action, args or {}, client, f"refused: {message}")
            log.debug("action %s from %s refused: %s", action, client, message)
            return HTTPException(status, message)

        if self.guard is None:
            raise refuse(403, "actions disabled")
        if not same_origin(request):
            raise refuse(403, "cross-origin request refused")
        session = self.sessions.find(request.cookies.get(SESSION_COOKIE))
        if session is None:
            raise refuse(401, "login required")
        if not csrf_ok(request, session):
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
            await self.view.set_work_order(b.work_order, b.gtin, b.lot, b.planned_qty, b.line)

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

    async def label(self, request: Request) -> dict[str, bool]:
        async def call(b: LabelDecisionRequest) -> None:
            await self.view.decide_label(b.printer, b.job, b.action)

        return await self._action(request, "label-decision", LabelDecisionRequest, call)


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
    audit: AuditLog,
    version: str,
    hosts: HostPolicy | None = None,
    max_streams: int = 32,
    max_body_bytes: int = MAX_BODY_BYTES,
    session_ttl_s: float = 8 * 3600,
    login_block_s: float = 1.0,
    login_failures_per_minute: int = 30,
) -> FastAPI:
    """Build the status app over `view`; `password` None disables the control actions.

    `hosts` are the names the page answers to (default: `HostPolicy.default`). `audit` is the
    agent's one audit log, shared with the MQTT commands. `app.state.feed` is the live streams'
    `StatusFeed`: its `run()` must run as a task beside the server (the runtime supervises it),
    and `StatusServer` closes it at shutdown.
    """
    feed = StatusFeed(view, max_streams=max_streams)
    api = _StatusApi(
        view,
        metrics=metrics,
        password=password,
        audit=audit,
        version=version,
        feed=feed,
        session_ttl_s=session_ttl_s,
        login_block_s=login_block_s,
        login_failures_per_minute=login_failures_per_minute,
    )
    app = FastAPI(
        title="Lineside status", version=version, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.feed = feed
    # Added innermost first: SecurityHeaders wraps HostGuard wraps BodyCap wraps the routes.
    app.add_middleware(BodyCap, max_bytes=max_body_bytes)
    app.add_middleware(HostGuard, policy=hosts or HostPolicy.default(""))
    app.add_middleware(SecurityHeaders)
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
        ("POST", "/api/actions/label", api.label),
    ]
    for method, path, endpoint in routes:
        app.add_api_route(path, endpoint, methods=[method])
    return app
