"""The store-and-forward contract: envelopes, drafts, the sink protocol and the error family.

`sync/` stores opaque envelopes and forwards them to destinations. It knows nothing about what
an event means: the route is a string used for filtering and topics, the payload is bytes.

Errors::

    SyncError                    base of everything sync/ raises on purpose
     ├── OutboxError             the outbox cannot take or give events
     │    ├── OutboxFull         backlog limit or disk full: the append is refused, nothing
     │    │                      already stored is touched (the one overflow policy)
     │    ├── OutboxClosed       the outbox is closed (shutting down)
     │    ├── OutboxDamaged      the database file fails its integrity check, or SQLite finds it
     │    │                      corrupt: restore it from a backup, never write on as if fine
     │    └── OutboxMissing      the directory's identity record says an outbox was made here,
     │                           but its file is missing or empty (refused, not made anew)
     └── SinkError               a destination failed
          ├── SinkUnavailable    transient (connection lost or refused, timeout, 5xx, 429):
          │                      reconnect with backoff and resume from the cursor
          └── SinkRejected       permanent for these envelopes (HTTP 4xx, MQTT 5 PUBACK
                                 reason code >= 0x80): park them in quarantine, move on
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType


class SyncError(Exception):
    """Base of the errors sync/ raises on purpose."""


class OutboxError(SyncError):
    """The outbox cannot take or give events."""


class OutboxFull(OutboxError):
    """The backlog limit or the disk is reached: the append is refused, nothing is dropped."""


class OutboxClosed(OutboxError):
    """The outbox is closed."""


class OutboxDamaged(OutboxError):
    """The database file is damaged (integrity check failed, or SQLite reports corruption)."""


class OutboxMissing(OutboxError):
    """An outbox was recorded in this directory but its file is missing or empty."""


class SinkError(SyncError):
    """A destination failed.

    `detail` is the destination's own text (an HTTP response body), which may quote the events
    it refused: it is part of the message (status page, quarantine reason) but not of
    `summary`, which is what logs show above DEBUG.
    """

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(f"{message}: {detail}" if detail else message)
        self.summary = message


class SinkUnavailable(SinkError):
    """A transient failure: reconnect with backoff and resume from the cursor.

    `retry_after` is the destination's own hint in seconds (HTTP `Retry-After`), if any.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = retry_after


class SinkRejected(SinkError):
    """The destination refused these envelopes for good; they go to quarantine.

    `ids` names the rejected envelopes when the destination said which (default: all of the
    batch that was sent).
    """

    def __init__(
        self, message: str, *, ids: Sequence[str] | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message, detail=detail)
        self.ids = tuple(ids) if ids is not None else None


class DestinationConfig(BaseModel):
    """What every destination's config has; each sink's model extends it with `kind`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Unique name of the destination (its cursor and metrics are keyed on it).",
    )
    types: tuple[str, ...] = Field(
        default=("*",),
        min_length=1,
        description='Event types routed to this destination; "*" means all.',
    )

    def accepts(self, route: str) -> bool:
        """Whether events of type `route` go to this destination."""
        return "*" in self.types or route in self.types


@dataclass(frozen=True, slots=True)
class Envelope:
    """One stored event as destinations see it.

    `seq` is the gapless position in the outbox (from 1), `id` the event's unique id (ULID),
    `route` what destinations filter on (the event type), `payload` the bytes to deliver,
    `created` the Unix time of the append.
    """

    seq: int
    id: str
    route: str
    payload: bytes
    created: float


@dataclass(frozen=True, slots=True)
class Draft:
    """An event on its way into the outbox, its payload already encoded around the seq.

    The payload is `head`, then the `seq` the outbox assigns inside the commit (decimal ASCII),
    then `tail`: the outbox fills in the number itself and runs no code of the appender's.
    `state` is key/value application state committed in the same transaction as the event
    (e.g. a serial-number counter), so the two can never disagree after a crash. `keys` are
    lookup keys (e.g. ``("lot", "L1")``) indexed for later queries.
    """

    id: str
    route: str
    head: bytes
    tail: bytes
    state: Mapping[str, str] = field(default_factory=dict)
    keys: Sequence[tuple[str, str]] = ()

    def payload(self, seq: int) -> bytes:
        """The payload as stored with `seq`: `head`, the seq in decimal, `tail`."""
        return self.head + str(seq).encode() + self.tail


@runtime_checkable
class LinkWatcher(Protocol):
    """A sink with a standing connection that can tell when it is lost while idle.

    Without it a quiet destination would look connected until the next send failed.
    """

    async def link_lost(self) -> str:
        """Return (with the cause) as soon as the connection is lost."""
        ...


@runtime_checkable
class Lingering(Protocol):
    """A sink that prefers full batches.

    A part-full batch is held back up to `linger_s` seconds (counted from its oldest event)
    for more events to join it.
    """

    @property
    def linger_s(self) -> float:
        """Seconds a part-full batch may wait."""
        ...


class Sink(Protocol):
    """One destination's connection.

    `async with sink:` connects (raising `SinkUnavailable` when it cannot); `send` delivers a
    batch of at most `max_batch` envelopes and returns only when the destination acknowledged
    all of them. Up to `window` `send` calls may run at once; acknowledgements may complete in
    any order. `send` raises `SinkRejected` for envelopes refused for good and
    `SinkUnavailable` when the link failed (the caller leaves the context and reconnects).
    """

    @property
    def max_batch(self) -> int:
        """How many envelopes one `send` takes."""
        ...

    @property
    def window(self) -> int:
        """How many `send` calls may be in flight at once."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def send(self, batch: Sequence[Envelope]) -> None:
        """Deliver `batch`; return when the destination acknowledged all of it."""
        ...
