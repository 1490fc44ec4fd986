"""What an SSCC holds and where a child is packed: the open pallets, then the history.

A child is a serialised item (GTIN + serial: a batch's trace code, or any GS1 code with AIs 01
and 21) or another SSCC. Its record in events is the scan as parsed (`kind`, `raw`, `gtin`,
`serial`, `lot` or `sscc`, and its GS1 Digital Link, biip's) and its key is `sgtin:GTIN|SERIAL`
or `sscc:SSCC`.

History keys: `aggregation.completed` is indexed under `sscc` and `packed` (each child's key),
`aggregation.changed` under `sscc` and `unpacked`. A child is in a closed SSCC when the latest
of its `packed`/`unpacked` events is a completion; the children of a closed SSCC are those of its
latest completion less those removed since. Open pallets (one per packing station at most) are
committed state, and known here for every station of the node (`OpenPallets`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import biip
from biip.gs1_messages import GS1Message

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sync.base import Envelope

COMPLETED = "aggregation.completed"
CHANGED = "aggregation.changed"


class StateReader(Protocol):
    """Committed application state (the outbox)."""

    def state(self, key: str) -> str | None:
        """The committed value of a key."""
        ...


class HistoryReader(StateReader, Protocol):
    """The outbox's lookups by key."""

    async def lookup(self, kind: str, value: str) -> list[Envelope]:
        """Retained envelopes under a lookup key, in seq order."""
        ...


def child_record(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """A scan's data (as interpreted) as a child: a serialised item or an SSCC; None if neither."""
    gtin, serial, sscc = data.get("gtin"), data.get("serial"), data.get("sscc")
    if gtin and serial:
        record = {"kind": "item", "gtin": gtin, "serial": serial, "lot": data.get("lot")}
        hri = f"(01){gtin}(21){serial}"
    elif sscc:
        record = {"kind": "sscc", "sscc": sscc}
        hri = f"(00){sscc}"
    else:
        return None
    try:
        link = GS1Message.parse_hri(hri).as_gs1_digital_link_uri().value
    except biip.ParseError:  # the read was validated already; a refusal all the same
        return None
    return {"raw": data.get("raw"), **record, "digital_link": link}


def child_key(record: Mapping[str, Any]) -> str:
    """The key a child is indexed under: `sgtin:GTIN|SERIAL` or `sscc:SSCC`."""
    if record.get("kind") == "sscc":
        return f"sscc:{record['sscc']}"
    return f"sgtin:{record['gtin']}|{record['serial']}"


def sscc_link(sscc: str) -> str:
    """An SSCC's GS1 Digital Link URI (biip's)."""
    return GS1Message.parse_hri(f"(00){sscc}").as_gs1_digital_link_uri().value


@dataclass(slots=True)
class OpenPallet:
    """The pallet a packing station has open, and whether its next scan is a removal."""

    sscc: str | None = None
    children: list[dict[str, Any]] = field(default_factory=list)
    removing: bool = False

    def holds(self, key: str) -> bool:
        """Whether a child with this key is on it."""
        return any(child_key(c) == key for c in self.children)

    def encoded(self) -> str:
        """As committed state."""
        return json.dumps(asdict(self), separators=(",", ":"))


class OpenPallets:
    """Every packing station's open pallet on this node, as committed."""

    def __init__(self, store: HistoryReader) -> None:
        self._store = store
        self._open: dict[str, OpenPallet] = {}

    @staticmethod
    def key(station: str) -> str:
        """The state key of a station's open pallet."""
        return f"pack:{station}"

    def restore(self, station: str) -> OpenPallet:
        """A station's pallet as committed (an empty one when none is)."""
        raw = self._store.state(self.key(station))
        pallet = OpenPallet(**json.loads(raw)) if raw else OpenPallet()
        self._open[station] = pallet
        return pallet

    def set(self, station: str, pallet: OpenPallet) -> None:
        """Record a station's pallet once its state is committed."""
        self._open[station] = pallet

    def holding(self, key: str) -> tuple[str, str] | None:
        """(station, SSCC) of the open pallet holding the child `key`, if any."""
        for station, pallet in self._open.items():
            if pallet.sscc is not None and pallet.holds(key):
                return station, pallet.sscc
        return None

    def open_at(self, sscc: str) -> str | None:
        """The station that has `sscc` open, if any."""
        return next((st for st, p in self._open.items() if p.sscc == sscc), None)

    async def packed_in(self, key: str) -> str | None:
        """The closed SSCC holding the child `key` (None: in none)."""
        found = await self._store.lookup("packed", key) + await self._store.lookup("unpacked", key)
        if not found:
            return None
        latest = max(found, key=lambda e: e.seq)
        if latest.route != COMPLETED:
            return None
        return str(json.loads(latest.payload)["data"]["sscc"])

    async def children_of(self, sscc: str) -> list[dict[str, Any]]:
        """The children of a closed SSCC, as its history says."""
        events = [json.loads(e.payload) for e in await self._store.lookup("sscc", sscc)]
        children: list[dict[str, Any]] = []
        for event in events:
            if event["type"] == COMPLETED:
                children = list(event["data"]["children"])
            elif event["type"] == CHANGED:
                gone = {child_key(c) for c in event["data"]["removed"]}
                children = [c for c in children if child_key(c) not in gone]
        return children
