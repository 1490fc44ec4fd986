"""Pallets in the history: what an SSCC holds, and which SSCCs a batch went into.

Packing stations (`agent.packing`) commit `aggregation.completed` (`sscc`, `children`, `count`)
when a pallet closes and `aggregation.changed` (`sscc`, `removed`) when a child is taken off,
indexed under `sscc`, and under `serial` (GTIN|serial) and `lot` of each item child. An SSCC's
children are those of its latest completion less those removed since (the same fold as the
stations'). A child is an item (`gtin`, `serial`, `lot`) or another SSCC (`sscc`): a pallet's
items are found through its child SSCCs too (at most `MAX_DEPTH` levels).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

COMPLETED = "aggregation.completed"
CHANGED = "aggregation.changed"
TYPES = frozenset({COMPLETED, CHANGED})
MAX_DEPTH = 5


class EventsByKey(Protocol):
    """Events under a lookup key, as JSON objects (`agent.history.trace.Tracer.events`)."""

    async def events(self, kind: str, value: str) -> list[dict[str, Any]]:
        """The events under one key, in seq order."""
        ...


def child_id(child: Mapping[str, Any]) -> str:
    """One child's identity: `sscc:SSCC` or `sgtin:GTIN|SERIAL`."""
    if child.get("kind") == "sscc":
        return f"sscc:{child.get('sscc')}"
    return f"sgtin:{child.get('gtin')}|{child.get('serial')}"


def fold(events: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each SSCC's children after `events` (in seq order)."""
    held: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        data = event["data"]
        sscc = str(data.get("sscc"))
        if event["type"] == COMPLETED:
            held[sscc] = list(data.get("children") or [])
        elif event["type"] == CHANGED:
            gone = {child_id(c) for c in data.get("removed") or []}
            held[sscc] = [c for c in held.get(sscc, []) if child_id(c) not in gone]
    return held


async def contents(history: EventsByKey, sscc: str) -> list[dict[str, Any]]:
    """The children of `sscc` as its history says (empty when it was never packed here)."""
    events = [e for e in await history.events("sscc", sscc) if e["type"] in TYPES]
    return fold(events).get(sscc, [])


async def items(history: EventsByKey, sscc: str, depth: int = 0) -> list[dict[str, Any]]:
    """The items on `sscc`, through its child SSCCs too."""
    found: list[dict[str, Any]] = []
    for child in await contents(history, sscc):
        if child.get("kind") == "sscc":
            if depth < MAX_DEPTH:
                found += await items(history, str(child.get("sscc")), depth + 1)
        else:
            found.append(child)
    return found


def holds(child: Mapping[str, Any], gtin: object, serial: object, lot: object) -> bool:
    """Whether an item child is of this batch: its GTIN and its serial (the code) or its lot."""
    if child.get("kind") == "sscc" or child.get("gtin") != gtin:
        return False
    return child.get("serial") == serial or (lot is not None and child.get("lot") == lot)


async def packed_into(
    history: EventsByKey, gtin: str | None, serial: str | None, lot: str | None
) -> tuple[list[str], list[dict[str, Any]]]:
    """The SSCCs holding items of a batch now, and the aggregation events that say so."""
    if not gtin:
        return [], []
    found: dict[int, dict[str, Any]] = {}
    if serial:
        found |= {e["seq"]: e for e in await history.events("serial", f"{gtin}|{serial}")}
    if lot:
        found |= {e["seq"]: e for e in await history.events("lot", lot)}
    ssccs = sorted({str(e["data"]["sscc"]) for e in found.values() if e["type"] in TYPES})
    holding, events = [], []
    for sscc in ssccs:
        if any(holds(c, gtin, serial, lot) for c in await contents(history, sscc)):
            holding.append(sscc)
            events += [e for e in await history.events("sscc", sscc) if e["type"] in TYPES]
    return holding, events


def units_packed(
    events: Iterable[Mapping[str, Any]], gtin: object, lot: object, serials: Iterable[object] = ()
) -> int:
    """Distinct items of a lot (its lot, or one of its codes' serials) on SSCCs after `events`."""
    codes = set(serials)
    packed = {
        child_id(c)
        for children in fold(events).values()
        for c in children
        if c.get("kind") != "sscc"
        and c.get("gtin") == gtin
        and (c.get("lot") == lot or c.get("serial") in codes)
    }
    return len(packed)
