"""The plant view's HTTP app: the page, the fleet, trace, reconciliation, reports, health, metrics.

Stateless over PostgreSQL (every answer is read from the store when asked, the broker's live
states aside), so several `lineside plant serve` may run behind one reverse proxy. Wrapped in
the agent page's own layers (`agent.web.middleware`): the strict Content-Security-Policy and
security headers, the `Host` check (400) and the body cap (413). Reads are open to whoever
reaches the port, as on the agent's page; the admin login (throttled, session cookie, CSRF
token, same-origin check: `agent.web.auth`) guards the one action, re-making the monthly
partitions ahead (`POST /api/actions/partitions`, which needs a role that may create tables).
At most `QUERIES_AT_ONCE` queries run at once; a database that does not answer is 503.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from agent.plant.fleet import FleetSummaries, fleet
from agent.plant.history import PlantStoreError, plant_report, plant_trace
from agent.plant.partitions import ensure_partitions
from agent.plant.reconciliation import STATUSES, plant_reconciliation
from agent.plant.reports import MEDIA_TYPES, render_plant_report
from agent.web.auth import (
    SESSION_COOKIE,
    LoginGuard,
    Sessions,
    csrf_ok,
    logged_out,
    login_verdict,
    same_origin,
)
from agent.web.hosts import HostPolicy
from agent.web.metrics import CONTENT_TYPE
from agent.web.middleware import BodyCap, HostGuard, SecurityHeaders

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from pydantic import SecretStr

    from agent.plant.broker import NodeStates
    from agent.plant.database import PlantDatabase

STATIC_DIR = Path(__file__).parent / "static"
AGENT_STATIC_DIR = Path(__file__).parent.parent / "web" / "static"
MAX_BODY_BYTES = 4 * 1024  # a login
QUERIES_AT_ONCE = 4
MAX_TEXT = 256  # a code or a lot in a query


class _PlantApi:
    """The endpoints over one database and (optionally) the broker's node states."""

    def __init__(
        self,
        database: PlantDatabase,
        *,
        site: str,
        timezone: str | None,
        states: NodeStates | None,
        password: SecretStr | None,
        version: str,
        fleet_recheck_s: float,
    ) -> None:
        self.database = database
        self.summaries = FleetSummaries(recheck_s=fleet_recheck_s)
        self.site = site
        self.timezone = timezone
        self.states = states
        self.version = version
        self.sessions = Sessions(ttl_s=8 * 3600)
        self.guard = None if password is None else LoginGuard(password)
        self.slots = asyncio.Semaphore(QUERIES_AT_ONCE)

    async def _read(self, query: Callable[[Any], Awaitable[Any]]) -> Any:
        async with self.slots:
            try:
                async with self.database.connection() as conn:
                    return await query(conn)
            except PlantStoreError as exc:
                raise HTTPException(503, str(exc)) from exc

    async def page(self) -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def healthz(self) -> JSONResponse:
        reasons = []
        try:
            await self._read(lambda conn: conn.execute("SELECT 1"))
        except HTTPException as exc:
            reasons.append(str(exc.detail))
        if self.states is not None and not self.states.connected:
            reasons.append(f"plant broker not connected: {self.states.last_error or 'connecting'}")
        if reasons:
            return JSONResponse({"status": "down", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def info(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "version": self.version,
            "broker": None
            if self.states is None
            else {"url": self.states.broker.url, "connected": self.states.connected},
        }

    async def fleet(self) -> list[dict[str, Any]]:
        stored = await self._read(lambda conn: self.summaries.read(conn, self.site))
        return fleet(stored, self.states)

    async def trace(self, code: str) -> dict[str, Any]:
        if len(code) > MAX_TEXT:
            raise HTTPException(400, f"a code is at most {MAX_TEXT} characters")
        result = await self._read(lambda conn: plant_trace(conn, self.site, code))
        if result is None:
            raise HTTPException(404, "unknown code")
        return result  # type: ignore[no-any-return]

    async def reconciliation(
        self,
        status: Annotated[
            str | None, Query(max_length=16, description="Only lots in this status")
        ] = None,
        lots: Annotated[int, Query(ge=1, le=1000, description="The newest lots")] = 200,
    ) -> list[dict[str, Any]]:
        if status is not None and status not in STATUSES:
            raise HTTPException(400, f"status: one of {', '.join(sorted(STATUSES))}")
        return await self._read(  # type: ignore[no-any-return]
            lambda conn: plant_reconciliation(conn, self.site, status=status, lots=lots)
        )

    async def report(
        self,
        lot: Annotated[
            str, Query(min_length=1, max_length=MAX_TEXT, description="LOT or GTIN|LOT")
        ],
        report_format: Annotated[
            Literal["csv", "json", "epcis", "fsma204"], Query(alias="format")
        ] = "json",
    ) -> Response:
        report = await self._read(lambda conn: plant_report(conn, self.site, lot))
        if report is None:
            raise HTTPException(404, "unknown lot")
        text = render_plant_report(report, report_format, timezone=self.timezone)
        media, extension = MEDIA_TYPES[report_format]
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in lot)[:64]
        name = f"lot-{safe}-{report_format}.{extension}"
        return Response(
            text.encode(),
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    async def metrics(self) -> Response:
        registry = CollectorRegistry(auto_describe=True)
        nodes = await self.fleet()
        labels = ["site", "node"]
        gauges = {
            "online": Gauge(
                "lineside_plant_node_online", "1 online, 0 offline", labels, registry=registry
            ),
            "stored_seq": Gauge(
                "lineside_plant_node_stored_seq",
                "Highest seq stored with no gap below",
                labels,
                registry=registry,
            ),
            "gaps": Gauge(
                "lineside_plant_node_gaps",
                "Missing seq ranges in the store",
                labels,
                registry=registry,
            ),
            "lag_s": Gauge(
                "lineside_plant_node_lag_seconds",
                "Newest event's time from making to the store",
                labels,
                registry=registry,
            ),
        }
        for n in nodes:
            values = {
                "online": None if n["online"] is None else int(n["online"]),
                "stored_seq": n["stored_seq"],
                "gaps": len(n["gaps"]),
                "lag_s": n["lag_s"],
            }
            for key, value in values.items():
                if value is not None:
                    gauges[key].labels(self.site, n["node"]).set(value)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE)

    # -- login and the one action ---------------------------------------------------------

    async def session_state(self, request: Request) -> dict[str, Any]:
        session = self.sessions.find(request.cookies.get(SESSION_COOKIE))
        return {
            "logged_in": session is not None,
            "csrf_token": session.csrf_token if session else None,
            "actions_enabled": self.guard is not None,
            "version": self.version,
        }

    async def login(self, request: Request) -> JSONResponse:
        if self.guard is None:
            raise HTTPException(403, "actions disabled")
        if not same_origin(request):
            raise HTTPException(403, "cross-origin request refused")
        try:
            body = await request.json()
        except ValueError as exc:
            raise HTTPException(400, "a JSON body with the password") from exc
        password = body.get("password") if isinstance(body, dict) else None
        if not isinstance(password, str) or len(password) > 1024:  # noqa: PLR2004
            raise HTTPException(400, "password: a string of at most 1024 characters")
        return login_verdict(request, self.guard, self.sessions, password, said=lambda _: None)

    async def logout(self, request: Request) -> JSONResponse:
        response, _ = logged_out(request, self.sessions)
        return response

    async def partitions(self, request: Request) -> dict[str, Any]:
        if self.guard is None:
            raise HTTPException(403, "actions disabled")
        if not same_origin(request):
            raise HTTPException(403, "cross-origin request refused")
        session = self.sessions.find(request.cookies.get(SESSION_COOKIE))
        if session is None:
            raise HTTPException(401, "login required")
        if not csrf_ok(request, session):
            raise HTTPException(403, "missing or wrong CSRF token")

        async def make(conn: Any) -> list[str]:
            async with conn.transaction():
                return await ensure_partitions(conn, now=datetime.now(UTC))

        created = await self._read(make)
        return {"ok": True, "created": created}


def create_plant_app(
    database: PlantDatabase,
    *,
    site: str,
    timezone: str | None,
    states: NodeStates | None,
    password: SecretStr | None,
    version: str,
    hosts: HostPolicy | None = None,
    fleet_recheck_s: float = 60.0,
) -> FastAPI:
    """The plant view's app over `database` (and the broker's `states`, when followed)."""
    api = _PlantApi(
        database,
        site=site,
        timezone=timezone,
        states=states,
        password=password,
        version=version,
        fleet_recheck_s=fleet_recheck_s,
    )
    app = FastAPI(
        title="Lineside plant view",
        version=version,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(BodyCap, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(HostGuard, policy=hosts or HostPolicy.default(""))
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.mount("/agent-static", StaticFiles(directory=AGENT_STATIC_DIR), name="agent-static")
    routes: list[tuple[str, str, Callable[..., Awaitable[Any]]]] = [
        ("GET", "/", api.page),
        ("GET", "/healthz", api.healthz),
        ("GET", "/metrics", api.metrics),
        ("GET", "/api/info", api.info),
        ("GET", "/api/fleet", api.fleet),
        ("GET", "/api/trace/{code:path}", api.trace),
        ("GET", "/api/reconciliation", api.reconciliation),
        ("GET", "/api/report", api.report),
        ("GET", "/api/session", api.session_state),
        ("POST", "/api/login", api.login),
        ("POST", "/api/logout", api.logout),
        ("POST", "/api/actions/partitions", api.partitions),
    ]
    for method, path, endpoint in routes:
        app.add_api_route(path, endpoint, methods=[method])
    return app
