"""Who may press the buttons: admin login and its throttle, sessions, CSRF tokens, Origin checks.

One admin password (read from a file by the runtime, compared in constant time). A login
creates a random session token (the `HttpOnly; SameSite=Strict` cookie) and a CSRF token the
page sends back as `X-CSRF-Token` on every state-changing request. Requests that change state
must also come from the page's own origin (scheme, host and port). Wrong passwords block their
client address for a while, growing with each failure, within a budget for all addresses
together (`LoginGuard`). The audit log is `agent.web.audit.AuditLog` (re-exported here).
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from agent.web.audit import AuditLog
from agent.web.hosts import request_origin, url_origin

if TYPE_CHECKING:
    from collections.abc import Callable

    from pydantic import SecretStr
    from starlette.requests import Request

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "THROTTLED",
    "AuditLog",
    "LoginGuard",
    "Session",
    "Sessions",
    "client_address",
    "csrf_ok",
    "logged_in",
    "logged_out",
    "login_verdict",
    "same_origin",
    "throttled",
]

log = logging.getLogger(__name__)

SESSION_COOKIE = "lineside_session"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(slots=True)
class Session:
    """One logged-in browser."""

    token: str
    csrf_token: str
    client: str
    expires: float  # time.monotonic()


class Sessions:
    """Logged-in sessions in memory (a restart logs everybody out, which is fine on a line PC)."""

    def __init__(self, *, ttl_s: float = 8 * 3600, limit: int = 64) -> None:
        self._ttl_s = ttl_s
        self._limit = limit
        self._sessions: dict[str, Session] = {}

    @property
    def ttl_s(self) -> float:
        """How long a session lives after login, in seconds."""
        return self._ttl_s

    def create(self, client: str) -> Session:
        """Start a new session for `client`, evicting the oldest ones beyond the limit."""
        self._expire()
        while len(self._sessions) >= self._limit:
            oldest = min(self._sessions.values(), key=lambda s: s.expires)
            del self._sessions[oldest.token]
        session = Session(
            token=secrets.token_urlsafe(32),
            csrf_token=secrets.token_urlsafe(32),
            client=client,
            expires=time.monotonic() + self._ttl_s,
        )
        self._sessions[session.token] = session
        return session

    def find(self, token: str | None) -> Session | None:
        """Return the live session with this cookie value, or None."""
        if not token:
            return None
        self._expire()
        return self._sessions.get(token)

    def end(self, token: str | None) -> None:
        """Forget a session (logout)."""
        if token:
            self._sessions.pop(token, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for token in [t for t, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[token]


@dataclass(slots=True)
class _Failures:
    """Failed logins of one client address."""

    count: int
    last: float  # monotonic time of the last failure
    blocked_until: float


class LoginGuard:
    """Checks the admin password and throttles guessing it, without ever delaying an answer.

    After a wrong password its client address is blocked for `block_s`, doubling with each
    further failure up to `max_block_s`; while blocked it gets 429 at once, the password not even
    looked at (so a slow answer cannot tell a client anything). Across all addresses at most
    `failures_per_minute` wrong passwords are judged (a token bucket): beyond that every login is
    429 until the budget refills, so rotating source addresses gains nothing. The table of
    addresses is bounded by evicting the oldest entries that no longer block; it is never
    cleared wholesale. A client's count starts over after `forget_after_s` without failures.
    """

    def __init__(
        self,
        password: SecretStr,
        *,
        block_s: float = 1.0,
        max_block_s: float = 60.0,
        failures_per_minute: int = 30,
        max_tracked: int = 4096,
        forget_after_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._password = password.get_secret_value().strip().encode()
        if not self._password:
            raise ValueError("the admin password is empty")
        if failures_per_minute < 1:
            raise ValueError("failures_per_minute must be at least 1")
        self._block_s = block_s
        self._max_block_s = max_block_s
        self._budget = float(failures_per_minute)
        self._tokens = float(failures_per_minute)
        self._refill_per_s = failures_per_minute / 60.0
        self._refilled = clock()
        self._max_tracked = max_tracked
        self._forget_after_s = forget_after_s
        self._clock = clock
        self._failures: OrderedDict[str, _Failures] = OrderedDict()  # oldest failure first

    def matches(self, attempt: str) -> bool:
        """Compare `attempt` with the password in constant time."""
        return hmac.compare_digest(attempt.encode(), self._password)

    def retry_after(self, client: str) -> float | None:
        """Seconds until `client` may try a password; None if it may try now."""
        now = self._clock()
        self._refill(now)
        waits = []
        entry = self._failures.get(client)
        if entry is not None and entry.blocked_until > now:
            waits.append(entry.blocked_until - now)
        if self._tokens < 1:
            waits.append((1 - self._tokens) / self._refill_per_s)
        return max(waits) if waits else None

    def failed(self, client: str) -> float:
        """Count a wrong password from `client`; how long it is now blocked, in seconds."""
        now = self._clock()
        self._refill(now)
        self._tokens = max(0.0, self._tokens - 1)
        entry = self._failures.pop(client, None)
        count = 1 if entry is None or now - entry.last > self._forget_after_s else entry.count + 1
        # The exponent is capped long before a float could overflow (2**20 * 1 s >> 60 s).
        block = min(self._max_block_s, self._block_s * 2.0 ** min(count - 1, 20))
        self._failures[client] = _Failures(count, now, now + block)
        self._evict(now)
        return block

    def succeeded(self, client: str) -> None:
        """Forget the failures of `client`."""
        self._failures.pop(client, None)

    @property
    def tracked(self) -> int:
        """How many client addresses the guard remembers failures of."""
        return len(self._failures)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._refilled)
        self._tokens = min(self._budget, self._tokens + elapsed * self._refill_per_s)
        self._refilled = now

    def _evict(self, now: float) -> None:
        """Drop the oldest entries that no longer block, until the table fits its bound."""
        excess = len(self._failures) - self._max_tracked
        if excess <= 0:
            return
        for client in [c for c, f in self._failures.items() if f.blocked_until <= now][:excess]:
            del self._failures[client]


def same_origin(request: Request) -> bool:
    """Whether the request comes from a page of this server.

    The `Origin` header (else `Referer`) must name the scheme, host and port the request was
    sent to (its `Host` header; a missing port is the scheme's default).
    """
    target = request_origin(request.url.scheme, request.headers.get("host", ""))
    source = request.headers.get("origin") or request.headers.get("referer")
    if target is None or not source:
        return False
    return url_origin(source) == target


def csrf_ok(request: Request, session: Session) -> bool:
    """Whether the request carries the session's CSRF token (compared in constant time)."""
    sent = request.headers.get(CSRF_HEADER, "")
    return hmac.compare_digest(sent.encode(), session.csrf_token.encode())


def client_address(request: Request) -> str:
    """Return the peer's address, as the audit log and the login throttle name it."""
    return request.client.host if request.client else "unknown"


# -- the answers both pages give (the agent's and the plant view) ---------------------------


def throttled(wait_s: float) -> JSONResponse:
    """429 for a blocked address, at once and whatever the password: no verdict leaks."""
    seconds = max(1, math.ceil(wait_s))
    return JSONResponse(
        {"detail": f"too many failed logins; try again in {seconds} s"},
        status_code=429,
        headers={"Retry-After": str(seconds)},
    )


THROTTLED = "refused: too many failed logins"
"""The outcome of a login from a blocked address, as `login_verdict` reports it."""


def login_verdict(
    request: Request,
    guard: LoginGuard,
    sessions: Sessions,
    password: str,
    *,
    said: Callable[[str], None],
) -> JSONResponse:
    """The answer to one login whose body was read: 429 at once, 401, or a new session.

    Nothing is awaited between the throttle check and the verdict, so concurrent guesses cannot
    all pass the check first; a blocked address is answered without the password being looked
    at, so no verdict leaks. `said` gets the outcome (`ok`, `failed` or `THROTTLED`) for the
    page's audit log and metrics.
    """
    client = client_address(request)
    wait = guard.retry_after(client)
    if wait is not None:
        said(THROTTLED)
        return throttled(wait)
    if not guard.matches(password):
        guard.failed(client)
        said("failed")
        log.warning("failed login from %s", client)  # at most the global budget a minute
        raise HTTPException(401, "wrong password")
    guard.succeeded(client)
    said("ok")
    log.info("login from %s", client)
    return logged_in(request, sessions, client)


def logged_in(request: Request, sessions: Sessions, client: str) -> JSONResponse:
    """A new session for `client`: its CSRF token in the body, its token as the cookie."""
    session = sessions.create(client)
    response = JSONResponse({"csrf_token": session.csrf_token})
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        max_age=int(sessions.ttl_s),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def logged_out(request: Request, sessions: Sessions) -> tuple[JSONResponse, bool]:
    """End the request's session (same origin and CSRF token required); whether one ended."""
    if not same_origin(request):
        raise HTTPException(403, "cross-origin request refused")
    token = request.cookies.get(SESSION_COOKIE)
    session = sessions.find(token)
    if session is not None:
        if not csrf_ok(request, session):
            raise HTTPException(403, "missing or wrong CSRF token")
        sessions.end(token)
    response = JSONResponse({"ok": True})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response, session is not None
