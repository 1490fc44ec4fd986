"""The store-and-forward contract: envelopes, drafts, the sink protocol and the error family.

`sync/` stores opaque envelopes and forwards them to destinations. It knows nothing about what
an event means: the route is a string used for filtering and topics, the payload is bytes.

Errors::

    SyncError                    base of everything sync/ raises on purpose
     ├── OutboxError             the outbox cannot take or give events
     │    ├── OutboxFull         backlog limit or disk full: the append is refused, nothing
     │    │                      already stored is touched (the one overflow policy)
     │    └── OutboxClosed       the outbox is closed (shutting down)
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
    from collections.abc import Callable, Mapping, Sequence
    from types import TracebackType


class SyncError(Exception):
    """Base of the errors sync/ raises on purpose."""


class OutboxError(SyncError):
    """The outbox cannot take or give events."""


class OutboxFull(OutboxError):
    """The backlog limit or the disk is reached: the append is refused, nothing is dropped."""


class OutboxClosed(OutboxError):
    """The outbox is closed."""


class SinkError(SyncError):
    """A destination failed."""


class SinkUnavailable(SinkError):
    """A transient failure: reconnect with backoff and resume from the cursor.

    `retry_after` is the destination's own hint in seconds (HTTP `Retry-After`), if any.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SinkRejected(SinkError):
    """The destination refused these envelopes for good; they go to quarantine.

    `ids` names the rejected envelopes when the destination said which (default: all of the
    batch that was sent).
    """

    def __init__(self, message: str, *, ids: Sequence[str] | None = None) -> None:
        super().__init__(message)
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
    """An event on its way into the outbox.

    `render` builds the payload once the outbox has assigned the event its `seq` (the payload
    carries it). `state` is key/value application state committed in the same transaction as
    the event (e.g. a serial-number counter), so the two can never disagree after a crash.
    `keys` are lookup keys (e.g. ``("lot", "L1")``) indexed for later queries.
    """

    id: str
    route: str
    render: Callable[[int], bytes]
    state: Mapping[str, str] = field(default_factory=dict)
    keys: Sequence[tuple[str, str]] = ()


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
