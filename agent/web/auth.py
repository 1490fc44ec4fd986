"""Who may press the buttons: admin login, sessions, CSRF tokens, Origin checks and the audit log.

One admin password (read from a file by the runtime, compared in constant time). A login
creates a random session token (the `HttpOnly; SameSite=Strict` cookie) and a CSRF token the
page sends back as `X-CSRF-Token` on every state-changing request. Requests that change state
must also come from the page's own origin. Failed logins are slowed per client, growing with
each failure up to a cap. Every action and login attempt is appended to a JSON-lines audit log.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from pathlib import Path

    from pydantic import SecretStr
    from starlette.requests import Request

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


class LoginGuard:
    """Checks the admin password and slows down whoever keeps guessing it."""

    def __init__(
        self, password: SecretStr, *, base_delay_s: float = 0.25, max_delay_s: float = 10.0
    ) -> None:
        self._password = password.get_secret_value().strip().encode()
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._failures: dict[str, int] = {}

    def matches(self, attempt: str) -> bool:
        """Compare `attempt` with the password in constant time."""
        return hmac.compare_digest(attempt.encode(), self._password)

    def delay_after_failure(self, client: str) -> float:
        """Count one failure of `client` and return how long to hold its answer back."""
        failures = self._failures.get(client, 0) + 1
        if len(self._failures) > 1024:  # noqa: PLR2004  # bound memory against address sprays
            self._failures.clear()
        self._failures[client] = failures
        return float(min(self._max_delay_s, self._base_delay_s * 2 ** (failures - 1)))

    def succeeded(self, client: str) -> None:
        """Forget the failures of `client`."""
        self._failures.pop(client, None)


def same_origin(request: Request) -> bool:
    """Whether the request comes from a page of this server (Origin, else Referer, vs Host)."""
    host = request.headers.get("host")
    if not host:
        return False
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    return parts.scheme in {"http", "https"} and parts.netloc.lower() == host.lower()


def csrf_ok(request: Request, session: Session) -> bool:
    """Whether the request carries the session's CSRF token (compared in constant time)."""
    sent = request.headers.get(CSRF_HEADER, "")
    return hmac.compare_digest(sent.encode(), session.csrf_token.encode())


def client_address(request: Request) -> str:
    """Return the peer's address, as the audit log and the login throttle name it."""
    return request.client.host if request.client else "unknown"


class AuditLog:
    """Appends one JSON line per action or login attempt: time, action, args, client, result."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def record(self, action: str, args: dict[str, Any], client: str, result: str) -> None:
        """Append one entry; a failure to write is logged, never hidden from the operator."""
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "action": action,
            "args": args,
            "client": client,
            "result": result,
        }
        line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            # A few hundred bytes, rarely: a plain append is cheaper than a thread hop.
            with self._path.open("a", encoding="utf-8") as f:
                f.write(line)
        except OSError:
            log.exception("cannot write the audit log %s", self._path)
