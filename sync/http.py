"""The HTTP destination: `HttpDestinationConfig` and `HttpSink`, which POSTs batches as JSON.

One `send` is one `POST url` whose body is the JSON array of the batch's envelopes (their
payloads are already JSON, so they are joined, not re-serialized), with the headers
`Content-Type: application/json` and `Idempotency-Key: FIRST..LAST` (the first and last event
id of the batch). A 2xx answer acknowledges the whole batch.

How answers and failures map onto the sync/ error family:

- connection refused or lost, timeouts, TLS failures, 408, 425, 429, 5xx and any other
  non-2xx/non-4xx status → `SinkUnavailable` (with `retry_after` from a `Retry-After` header,
  in seconds or as an HTTP-date);
- any other 4xx → `SinkRejected("HTTP 422: <first 200 characters of the body>")`.

TLS verification is always on (against `ca_file` when given, else the system store) unless
`insecure_skip_verify` is explicitly true. Bearer tokens and basic-auth passwords are read from
files when the sink starts and are held as `SecretStr`; they are never logged.

`probe` asks the receiver, without sending events, whether it answers and takes the
credentials: one `OPTIONS url` with the sink's TLS settings and headers, told as an `HttpProbe`.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import logging
import ssl
import time
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path  # noqa: TC003  # pydantic resolves the annotations at runtime
from typing import TYPE_CHECKING, Literal, Self
from urllib.parse import urlsplit

import httpx
from pydantic import Field, field_validator, model_validator

from sync.base import DestinationConfig, SinkRejected, SinkUnavailable
from sync.secrets import read_secret

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

    from sync.base import Envelope

log = logging.getLogger(__name__)

BODY_EXCERPT_CHARS = 200
# Statuses outside 5xx that mean "try again later", not "these events are bad".
TRANSIENT_STATUSES = frozenset({408, 425, 429})
# Headers the sink sets itself; `headers` may not override them.
RESERVED_HEADERS = frozenset({"content-type", "idempotency-key", "authorization", "content-length"})
# Statuses that say the credentials (or the proxy's) were not accepted.
CREDENTIALS_REFUSED_STATUSES = frozenset({401, 403, 407})


class HttpDestinationConfig(DestinationConfig):
    """A destination reached by `POST url` with a JSON array of envelopes."""

    kind: Literal["http"] = Field(description='Destination kind: "http".')
    url: str = Field(description="The http:// or https:// URL the batches are POSTed to.")
    batch_size: int = Field(default=100, ge=1, le=10_000, description="Most envelopes in one POST.")
    timeout_s: float = Field(
        default=10, gt=0, description="Seconds to wait for connect, write and the answer."
    )
    ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA(s) that sign the server's certificate (default: system).",
    )
    insecure_skip_verify: bool = Field(
        default=False,
        description="Skip TLS certificate verification (for tests only; logged as a warning).",
    )
    cert_file: Path | None = Field(
        default=None, description="PEM client certificate for mutual TLS."
    )
    key_file: Path | None = Field(
        default=None,
        description="PEM private key of `cert_file` (omit when the key is inside cert_file).",
    )
    bearer_token_file: Path | None = Field(
        default=None,
        description="File holding a bearer token sent as `Authorization: Bearer ...`.",
    )
    username: str | None = Field(default=None, description="User name for HTTP basic auth.")
    password_file: Path | None = Field(
        default=None, description="File holding the HTTP basic-auth password of `username`."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra headers sent with every POST."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    @field_validator("headers")
    @classmethod
    def _no_reserved_headers(cls, value: dict[str, str]) -> dict[str, str]:
        clash = sorted(name for name in value if name.lower() in RESERVED_HEADERS)
        if clash:
            raise ValueError(f"headers the sink sets itself cannot be overridden: {clash}")
        return value

    @model_validator(mode="after")
    def _consistent_credentials(self) -> Self:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        if (self.username is None) != (self.password_file is None):
            raise ValueError("basic auth needs both username and password_file")
        if self.bearer_token_file is not None and self.username is not None:
            raise ValueError("use either bearer_token_file or username/password_file, not both")
        return self


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date), if it parses."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """Find the TLS error at the root of an httpx transport error, if that is what it was."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def describe_transport_error(exc: httpx.RequestError) -> str:
    """Say in one line why a request failed, naming TLS problems as such."""
    tls = tls_failure(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return f"TLS: certificate verify failed ({tls.verify_message})"
    if tls is not None:
        return f"TLS: {tls.reason or tls}"
    if isinstance(exc, httpx.TimeoutException):
        return f"timeout ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc or 'connection failed'}"


@dataclass(frozen=True, slots=True)
class HttpProbe:
    """How the receiver answered `HttpSink.probe`: its HTTP status, or why there was no answer."""

    status: int | None
    failure: str | None = None  # one line (connection, TLS, timeout) when `status` is None

    @property
    def authenticated(self) -> bool:
        """Whether it answered without refusing the credentials (401, 403, 407)."""
        return self.status is not None and self.status not in CREDENTIALS_REFUSED_STATUSES


class HttpSink:
    """POSTs batches of envelopes to one HTTP endpoint; `async with` owns the client.

    `window` is 1 because receivers see the batches in order (a second POST never overtakes
    the first).
    """

    def __init__(self, config: HttpDestinationConfig) -> None:
        self._config = config
        self._client: httpx.AsyncClient | None = None

    @property
    def max_batch(self) -> int:
        """How many envelopes one POST takes."""
        return self._config.batch_size

    @property
    def window(self) -> int:
        """One POST at a time, so that receivers see batches in order."""
        return 1

    async def __aenter__(self) -> Self:
        config = self._config
        try:
            verify = await asyncio.to_thread(self._tls_context)
            auth_headers = await asyncio.to_thread(self._auth_headers)
        except OSError as exc:
            raise SinkUnavailable(
                f"{config.name}: cannot read TLS or credential files: {exc}"
            ) from exc
        except ssl.SSLError as exc:
            raise SinkUnavailable(f"{config.name}: TLS setup failed: {exc}") from exc
        headers = {**config.headers, **auth_headers}
        self._client = httpx.AsyncClient(
            verify=verify,
            timeout=httpx.Timeout(config.timeout_s),
            headers=headers,
            follow_redirects=False,
        )
        log.debug("HTTP destination %s ready for %s", config.name, config.url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _tls_context(self) -> ssl.SSLContext | bool:
        """Build the TLS settings for the client (blocking: reads certificate files)."""
        config = self._config
        if urlsplit(config.url).scheme != "https":
            return True
        context = ssl.create_default_context(
            cafile=str(config.ca_file) if config.ca_file is not None else None
        )
        if config.cert_file is not None:
            context.load_cert_chain(
                str(config.cert_file),
                str(config.key_file) if config.key_file is not None else None,
            )
        if config.insecure_skip_verify:
            log.warning(
                "HTTP destination %s: TLS certificate verification is OFF "
                "(insecure_skip_verify); anyone on the path can read and alter events",
                config.name,
            )
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _auth_headers(self) -> Mapping[str, str]:
        """Build the Authorization header from the credential files (blocking: reads them)."""
        config = self._config
        if config.bearer_token_file is not None:
            token = read_secret(config.bearer_token_file)
            return {"Authorization": f"Bearer {token.get_secret_value()}"}
        if config.username is not None and config.password_file is not None:
            password = read_secret(config.password_file)
            pair = f"{config.username}:{password.get_secret_value()}".encode()
            return {"Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"}
        return {}

    async def send(self, batch: Sequence[Envelope]) -> None:
        """POST `batch`; return when the server answered 2xx."""
        if not batch:
            return
        if self._client is None:
            raise SinkUnavailable(f"{self._config.name}: the HTTP sink is not open")
        name = self._config.name
        body = b"[" + b",".join(envelope.payload for envelope in batch) + b"]"
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": f"{batch[0].id}..{batch[-1].id}",
        }
        try:
            response = await self._client.post(self._config.url, content=body, headers=headers)
        except httpx.RequestError as exc:  # no answer (or an undecodable one): try again
            raise SinkUnavailable(f"{name}: {describe_transport_error(exc)}") from exc
        status = response.status_code
        if 200 <= status < 300:  # noqa: PLR2004
            log.debug("HTTP destination %s took %d events (HTTP %d)", name, len(batch), status)
            return
        excerpt = response.text[:BODY_EXCERPT_CHARS]
        # the body may echo the events it refused (barcode contents): a detail, never logged
        # above DEBUG
        if 400 <= status < 500 and status not in TRANSIENT_STATUSES:  # noqa: PLR2004
            raise SinkRejected(f"HTTP {status}", detail=excerpt)
        raise SinkUnavailable(
            f"{name}: HTTP {status}",
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            detail=excerpt,
        )

    async def probe(self) -> HttpProbe:
        """Send `OPTIONS url` with the sink's TLS settings and credentials; say what came back."""
        if self._client is None:
            raise SinkUnavailable(f"{self._config.name}: the HTTP sink is not open")
        try:
            response = await self._client.options(self._config.url)
        except httpx.RequestError as exc:
            return HttpProbe(None, describe_transport_error(exc))
        log.debug(
            "HTTP destination %s: OPTIONS answered %d", self._config.name, response.status_code
        )
        return HttpProbe(response.status_code)
