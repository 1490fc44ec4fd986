"""Trace-code serials: the next one of a GTIN, sequential or random, and the state that commits it.

`line.serial_mode = "sequential"` (default): a counter per GTIN in the outbox's state, zero-padded
to `serial_width`, committed in the batch's own transaction. `"random"`: `serial_width` digits
(at least 12) from the operating system's CSPRNG (`secrets`), so a serial cannot be guessed
from another (with 12 digits and a million serials of one GTIN, a guess hits one with
probability 1 in 1,000,000); a candidate is used only if the retained history (the outbox's
`serial` lookup key, `GTIN|serial`) has never seen it for that GTIN, and it is committed with
the batch like a sequential one. A crash before that commit leaves the serial unused (it was on
no code); after it, the history holds it, so it is never drawn again. The random mode's serial
count per GTIN is kept as well (`serial:GTIN`), for the page and the reports.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from agent.config.line import LineSection
    from sync.base import Envelope

MIN_RANDOM_WIDTH = 12
MAX_DRAWS = 100  # 100 draws that all hit used serials: the serial space is exhausted


class SerialError(Exception):
    """No unused serial could be found."""


class SerialStore(Protocol):
    """What serial allocation needs from the outbox."""

    def state(self, key: str) -> str | None:
        """Committed application state."""
        ...

    async def lookup(self, kind: str, value: str) -> list[Envelope]:
        """Retained envelopes under a lookup key."""
        ...


async def next_serial(
    store: SerialStore, gtin: str, line: LineSection
) -> tuple[str, dict[str, str]]:
    """The serial of the next code of `gtin` on `line`, and the state to commit with its batch."""
    mode, width = line.serial_mode, line.serial_width
    key = f"serial:{gtin}"
    count = int(store.state(key) or "0") + 1
    if mode != "random":
        return str(count).zfill(width), {key: str(count)}
    for _ in range(MAX_DRAWS):
        serial = str(secrets.randbelow(10**width)).zfill(width)
        if not await store.lookup("serial", f"{gtin}|{serial}"):
            return serial, {key: str(count)}
    raise SerialError(f"no unused random serial of {width} digits for GTIN {gtin}")
