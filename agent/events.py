"""Event envelopes of CONTRACTS.md: building them as outbox drafts, and reading them back.

An envelope is `{"id", "type", "time", "site", "node", "seq", "source", "data"}`, UTF-8 JSON.
The id (a ULID) and time are fixed when the event is made, and the whole envelope is encoded
then: the gapless `seq` is assigned by the outbox inside the commit, which writes it between
the draft's `head` (up to `"seq":`) and `tail` (from `,"source":` on).
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sync.base import Draft

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def utc_now() -> datetime:
    """The wall clock in UTC (the default clock of an `EventFactory`)."""
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """UTC with milliseconds and a Z, as the envelope's `time`."""
    m = moment.astimezone(UTC)
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
        f".{m.microsecond // 1000:03d}Z"
    )


# RFC 4648 base32 to the Crockford alphabet ULIDs are written in
_CROCKFORD = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
)
_RANDOM_BITS = 80


class UlidSource:
    """ULID strings: 48-bit Unix milliseconds, 80 random bits; monotonic within a millisecond.

    Made as python-ulid's monotonic `ULID()` makes them (a new random part each millisecond,
    incremented within it; never going back if the clock does), in a quarter of its time.
    """

    def __init__(self) -> None:
        self._ms = -1
        self._random = 0
        self._time_part = ""

    def __call__(self) -> str:
        """The next id."""
        ms = time.time_ns() // 1_000_000
        if ms > self._ms:
            self._random = int.from_bytes(os.urandom(_RANDOM_BITS // 8))
            self._set_ms(ms)
        else:
            self._random += 1
            if self._random >> _RANDOM_BITS:  # 2^80 ids in one millisecond: borrow the next
                self._random = 0
                self._set_ms(self._ms + 1)
        # 80 bits are exactly 16 base32 digits
        random_part = base64.b32encode(self._random.to_bytes(_RANDOM_BITS // 8))
        return self._time_part + random_part.translate(_CROCKFORD).decode()

    def _set_ms(self, ms: int) -> None:
        # 48 bits as 10 base32 digits (50 bits, the top 2 zero): once per millisecond
        self._ms = ms
        self._time_part = base64.b32encode(ms.to_bytes(10)).translate(_CROCKFORD)[6:].decode()


new_ulid = UlidSource()


@dataclass(frozen=True, slots=True)
class EventFactory:
    """Makes outbox drafts of envelopes for one site and node.

    `clock` is injectable so tests can step the wall clock; ordering never depends on it
    (consumers order by `seq`), and ids stay unique whatever the clock does. `clock_synced`
    says whether the system clock is synchronised (NTP); when it says False, the envelope ends
    with `"clock_synced":false` so consumers know its `time` may be off (absent otherwise).
    """

    site: str
    node: str
    clock: Callable[[], datetime] = utc_now
    clock_synced: Callable[[], bool | None] = lambda: None

    def draft(
        self,
        type_: str,
        source: str,
        data: Mapping[str, Any],
        *,
        keys: Sequence[tuple[str, str]] = (),
        state: Mapping[str, str] | None = None,
        event_id: str | None = None,
    ) -> Draft:
        """A draft of one event, ready for `Outbox.append`."""
        ident = event_id or new_ulid()
        head = (
            '{"id":'
            + _encoder.encode(ident)
            + ',"type":'
            + _encoder.encode(type_)
            + ',"time":'
            + _encoder.encode(format_time(self.clock()))
            + ',"site":'
            + _encoder.encode(self.site)
            + ',"node":'
            + _encoder.encode(self.node)
            + ',"seq":'
        ).encode()
        flag = ',"clock_synced":false' if self.clock_synced() is False else ""
        tail = (
            ',"source":' + _encoder.encode(source) + ',"data":' + _encoder.encode(data) + flag + "}"
        ).encode()
        return Draft(
            id=ident, route=type_, head=head, tail=tail, state=state or {}, keys=tuple(keys)
        )
