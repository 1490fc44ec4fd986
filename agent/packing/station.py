"""A packing station: one scanner building pallets, each step committed before it is answered.

Scans, in the station's state (its open pallet, committed as `pack:STATION`):

- `PACK:NEW`: the next SSCC (`agent.packing.sscc`) is opened; with a `printer`, its label's
  print job is committed in the same transaction (`agent.printing`);
- an SSCC while none is open: that pallet is opened again, with the children its history gives;
- a serialised item (GTIN + serial, a trace code) or another SSCC while one is open: added;
- the open SSCC again, or `PACK:CLOSE`: closed: `aggregation.completed` (`sscc`, `children`,
  `count`); closing an empty pallet commits no event;
- `PACK:REMOVE`, then a child: taken off the open pallet, or else off the closed SSCC holding it:
  `aggregation.changed` (`sscc`, `removed`).

Anything else is refused with a reason (NAK, `scan.rejected`), never silently added: a read that
is not valid GS1 (an SSCC with a wrong check digit: `agent.scanning`'s reason), a child already
in an open or closed SSCC, an unknown code, an instruction that does not fit the state.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from agent.config.scanners import StationRole
from agent.packing import refusals
from agent.packing.contents import (
    CHANGED,
    COMPLETED,
    HistoryReader,
    OpenPallet,
    OpenPallets,
    child_key,
    child_record,
)
from agent.packing.sscc import next_sscc
from agent.scanning.interpret import (
    PackingRead,
    Receipt,
    Rejected,
    StationRules,
    interpret,
    rejected,
)
from sync.base import OutboxFull

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from agent.alarms import AlarmBoard
    from agent.config.printers import PackingSection
    from agent.events import EventFactory
    from agent.scanning.interpret import Scanned
    from agent.scanning.rejections import Rejection
    from drivers.base import DeviceHealth, Scanner, ScanReading
    from sync.base import Draft, Envelope

log = logging.getLogger(__name__)

NEW, CLOSE, REMOVE = "PACK:NEW", "PACK:CLOSE", "PACK:REMOVE"
_READ_AS = StationRules(StationRole.INBOUND)  # a read's GS1 meaning, whatever the station


class PackStore(HistoryReader, Protocol):
    """What a packing station needs from the outbox."""

    async def append_many(self, drafts: Sequence[Draft]) -> list[Envelope]:
        """Commit events in one transaction."""
        ...

    async def put_state(self, values: Mapping[str, str]) -> None:
        """Commit state without an event."""
        ...


class PalletLabels(Protocol):
    """A printer taking pallet labels (`agent.printing.worker.LabelPrinter`)."""

    async def enqueue(
        self,
        kind: Literal["batch", "sscc"],
        code: str,
        commit: Callable[[Mapping[str, str]], Awaitable[Any]],
        context: Mapping[str, str] | None = None,
    ) -> int:
        """Commit a print job with the caller's state."""
        ...


class PackingStation:
    """One packing scanner's I/O and pallet state; see the module docstring."""

    role = StationRole.PACKING

    def __init__(
        self,
        scanner: Scanner,
        *,
        factory: EventFactory,
        store: PackStore,
        alarms: AlarmBoard,
        pallets: OpenPallets,
        packing: PackingSection,
        printer: PalletLabels | None = None,
        on_scan: Callable[[ScanReading, Scanned], None] | None = None,
    ) -> None:
        self.scanner = scanner
        self.id = scanner.id
        self._factory = factory
        self._store = store
        self._alarms = alarms
        self._pallets = pallets
        self._packing = packing
        self._printer = printer
        self._on_scan = on_scan
        self.pallet = OpenPallet()
        self.last_closed: dict[str, Any] | None = None  # the last aggregation.completed's data

    def restore(self) -> None:
        """Load the open pallet as committed (before any station of the node reads a scan)."""
        self.pallet = self._pallets.restore(self.id)

    @property
    def health(self) -> DeviceHealth:
        """The scanner link's health."""
        return self.scanner.health

    async def run(self) -> None:
        """Read the scanner for ever (the driver reconnects by itself)."""
        async for reading in self.scanner.stream():
            await self.handle(reading)

    async def handle(self, reading: ScanReading) -> bool:
        """Act on one read, commit, answer the scanner; whether it was accepted.

        `on_scan` hears of every read that was committed (accepted, or refused with its
        `scan.rejected`), as the other stations' reads: the status page's recent scans.
        """
        meaning = interpret(reading.data, _READ_AS, error=reading.error)
        heard: Scanned | None = None
        try:
            if not isinstance(meaning, Receipt):  # Rejected: at no line, nothing else comes
                assert isinstance(meaning, Rejected)
                await self._refuse(reading, meaning.data)
                heard, accepted = meaning, False
            else:
                refusal = await self._act(meaning.data)
                if refusal is not None:
                    heard = rejected(reading.data.strip(), refusal)
                    await self._refuse(reading, heard.data)
                else:
                    heard = PackingRead(meaning.data)
                accepted = refusal is None
        except OutboxFull as exc:
            self._alarms.backlog_refused(exc)
            log.error("packing %s: scan refused: %s", self.id, exc)  # noqa: TRY400 (expected)
            heard, accepted = None, False  # nothing of this read was committed
        else:
            self._alarms.clear("backlog")  # the outbox takes events again
        await self.scanner.reply(accepted=accepted)
        if self._on_scan is not None and heard is not None:
            self._on_scan(reading, heard)
        return accepted

    async def _refuse(self, reading: ScanReading, data: dict[str, Any]) -> None:
        source = f"scanner:{reading.source}"
        await self._store.append_many([self._factory.draft("scan.rejected", source, data)])
        log.info("packing %s: scan refused (%s)", self.id, data.get("reason_code"))

    async def _act(self, data: dict[str, Any]) -> Rejection | None:
        raw = str(data.get("raw", ""))
        if raw in (NEW, CLOSE, REMOVE):
            return await self._instruction(raw)
        return await self._child(data)

    async def _instruction(self, raw: str) -> Rejection | None:
        pallet = self.pallet
        if raw == NEW:
            return refusals.already_open(pallet.sscc) if pallet.sscc else await self._new()
        if raw == CLOSE:
            return await self._close() if pallet.sscc else refusals.nothing_open()
        await self._commit(replace(pallet, removing=True))
        return None

    async def _child(self, data: dict[str, Any]) -> Rejection | None:
        pallet = self.pallet
        record = child_record(data)
        if record is None:
            return refusals.unknown_code()
        if pallet.removing:
            return await self._remove(record)
        if pallet.sscc is None:
            if record["kind"] != "sscc":
                return refusals.nothing_open()
            return await self._reopen(record["sscc"])
        if record.get("sscc") == pallet.sscc:
            return await self._close()
        return await self._add(record)

    async def _commit(self, pallet: OpenPallet, extra: Mapping[str, str] | None = None) -> None:
        await self._store.put_state({OpenPallets.key(self.id): pallet.encoded(), **(extra or {})})
        self._pallets.set(self.id, pallet)
        self.pallet = pallet

    async def _new(self) -> Rejection | None:
        sscc, numbering = next_sscc(self._store, self._packing)
        pallet = OpenPallet(sscc=sscc)
        if self._printer is None:
            await self._commit(pallet, numbering)
        else:
            state = {OpenPallets.key(self.id): pallet.encoded(), **numbering}

            async def commit(job_state: Mapping[str, str]) -> None:
                await self._store.put_state({**state, **job_state})

            await self._printer.enqueue("sscc", sscc, commit)
            self._pallets.set(self.id, pallet)
            self.pallet = pallet
        log.info("packing %s: new SSCC %s", self.id, sscc)
        return None

    async def _reopen(self, sscc: str) -> Rejection | None:
        elsewhere = self._pallets.open_at(sscc)
        if elsewhere is not None:
            return refusals.open_elsewhere(sscc, elsewhere)
        holder = await self._pallets.packed_in(f"sscc:{sscc}")
        if holder is not None:
            return refusals.packed_elsewhere(sscc, holder)
        await self._commit(OpenPallet(sscc=sscc, children=await self._pallets.children_of(sscc)))
        return None

    async def _add(self, record: dict[str, Any]) -> Rejection | None:
        key = child_key(record)
        assert self.pallet.sscc is not None
        if self.pallet.holds(key):
            return refusals.already_here(self.pallet.sscc)
        held = self._pallets.holding(key)
        if held is not None:
            return refusals.packed_elsewhere(_shown(record), held[1])
        closed = await self._pallets.packed_in(key)
        if closed is not None:
            return refusals.packed_elsewhere(_shown(record), closed)
        if record["kind"] == "sscc" and self._pallets.open_at(record["sscc"]) is not None:
            return refusals.open_elsewhere(
                record["sscc"], str(self._pallets.open_at(record["sscc"]))
            )
        await self._commit(replace(self.pallet, children=[*self.pallet.children, record]))
        return None

    async def _close(self) -> Rejection | None:
        pallet = self.pallet
        assert pallet.sscc is not None
        empty = OpenPallet()
        if not pallet.children:
            await self._commit(empty)
            return None
        keys = [("sscc", pallet.sscc), *(("packed", child_key(c)) for c in pallet.children)]
        keys += _trace_keys(pallet.children)
        data = {"sscc": pallet.sscc, "children": pallet.children, "count": len(pallet.children)}
        draft = self._factory.draft(
            COMPLETED,
            f"scanner:{self.id}",
            data,
            keys=keys,
            state={OpenPallets.key(self.id): empty.encoded()},
        )
        await self._store.append_many([draft])
        self._pallets.set(self.id, empty)
        self.pallet = empty
        self.last_closed = data
        log.info(
            "packing %s: SSCC %s closed with %d children", self.id, data["sscc"], data["count"]
        )
        return None

    async def _remove(self, record: dict[str, Any]) -> Rejection | None:
        key = child_key(record)
        pallet = self.pallet
        if pallet.holds(key):
            kept = [c for c in pallet.children if child_key(c) != key]
            await self._commit(replace(pallet, children=kept, removing=False))
            return None
        sscc = await self._pallets.packed_in(key)
        if sscc is None:
            await self._commit(replace(pallet, removing=False))
            return refusals.not_packed(_shown(record))
        done = replace(pallet, removing=False)
        draft = self._factory.draft(
            CHANGED,
            f"scanner:{self.id}",
            {"sscc": sscc, "removed": [record]},
            keys=[("sscc", sscc), ("unpacked", key), *_trace_keys([record])],
            state={OpenPallets.key(self.id): done.encoded()},
        )
        await self._store.append_many([draft])
        self._pallets.set(self.id, done)
        self.pallet = done
        return None


def _shown(record: Mapping[str, Any]) -> str:
    if record.get("kind") == "sscc":
        return str(record["sscc"])
    return f"(01){record['gtin']}(21){record['serial']}"


def _trace_keys(children: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Keys that let a trace of a child's serial or lot find the SSCC it went into."""
    keys: list[tuple[str, str]] = []
    for child in children:
        if child.get("kind") == "item":
            keys.append(("serial", f"{child['gtin']}|{child['serial']}"))
            if child.get("lot"):
                keys.append(("lot", str(child["lot"])))
    return sorted(set(keys))
