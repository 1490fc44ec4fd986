"""The fault suite's oracle: a ledger of what devices were acknowledged for, checked on delivery.

Like Jepsen's total-queue checker. A test records, per device read, its key (a unique payload
the test made up, e.g. the scanned text) and the content the event must carry; then whether the
device was acknowledged (good-read byte, PLC ack coil) or not. What an independent subscriber
received is then classified:

- lost: acknowledged, never delivered — a broken promise;
- duplicated: the same id delivered more than once — allowed (at-least-once), reported;
- unexpected: an event whose key the ledger never saw, or that was refused (NAK), or a second
  id for the same key (committed twice) — a broken promise;
- committed_unacked: sent by the device, delivered, but its ack never came (the agent died
  between commit and ack) — legitimate, reported apart;
- distorted: the same id with different bytes, or content different from the ledger's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

COLUMNS = (
    "ledger",
    "delivered",
    "lost",
    "duplicated",
    "unexpected",
    "distorted",
    "committed_unacked",
)


@dataclass
class Ledger:
    """Every read a test made a device send, and which ones the device was acknowledged for."""

    expected: dict[str, dict[str, Any]] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)

    def sent(self, key: str, content: dict[str, Any]) -> None:
        """The device produced a read with this key; its event must carry `content`."""
        if key in self.expected:
            raise ValueError(f"ledger keys must be unique: {key!r}")
        self.expected[key] = content

    def acknowledge(self, key: str) -> None:
        """The device was acknowledged for `key` (the agent promised it is durable)."""
        self.acked.add(key)

    def refuse(self, key: str) -> None:
        """The device got a refusal (NAK) for `key`: it must not be delivered."""
        self.refused.add(key)

    def answers(self, keys: list[str], replies: bytes, *, ack: bytes, nak: bytes) -> int:
        """Map a scanner's replies to its reads, in order (one reply per read); returns how many."""
        answered = 0
        for key, reply in zip(keys, replies, strict=False):
            if bytes([reply]) == ack:
                self.acknowledge(key)
            elif bytes([reply]) == nak:
                self.refuse(key)
            else:
                raise ValueError(f"unknown reply byte {reply!r} for {key!r}")
            answered += 1
        return answered


@dataclass(frozen=True)
class Delivery:
    """One message the subscriber received: event id, ledger key, content and raw bytes."""

    id: str
    key: str | None
    content: dict[str, Any]
    payload: bytes


@dataclass
class Counts:
    """The verdict of one run; `problems` says which ids/keys made the bad counts."""

    ledger: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    distorted: int = 0
    committed_unacked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No promise broken: nothing lost, unexpected or distorted."""
        return self.lost == 0 and self.unexpected == 0 and self.distorted == 0

    def row(self) -> tuple[int, ...]:
        """The counts in `COLUMNS` order."""
        return tuple(int(getattr(self, c)) for c in COLUMNS)


def check(ledger: Ledger, deliveries: list[Delivery]) -> Counts:
    """Classify `deliveries` against `ledger` (see the module docstring)."""
    counts = Counts(ledger=len(ledger.acked))
    by_id: dict[str, Delivery] = {}
    ids_of_key: dict[str, str] = {}
    for d in deliveries:
        first = by_id.get(d.id)
        if first is not None:
            counts.duplicated += 1
            if first.payload != d.payload:
                counts.distorted += 1
                counts.problems.append(f"distorted: id {d.id} delivered with different bytes")
            continue
        by_id[d.id] = d
        if d.key is None or d.key not in ledger.expected:
            counts.unexpected += 1
            counts.problems.append(f"unexpected: id {d.id} key {d.key!r} never sent")
            continue
        other = ids_of_key.setdefault(d.key, d.id)
        if other != d.id:
            counts.unexpected += 1
            counts.problems.append(f"unexpected: key {d.key!r} committed twice ({other}, {d.id})")
            continue
        if d.key in ledger.refused:
            counts.unexpected += 1
            counts.problems.append(f"unexpected: key {d.key!r} delivered although refused")
            continue
        want = ledger.expected[d.key]
        wrong = {k: (v, d.content.get(k)) for k, v in want.items() if d.content.get(k) != v}
        if wrong:
            counts.distorted += 1
            counts.problems.append(f"distorted: key {d.key!r}: {wrong}")
        if d.key not in ledger.acked:
            counts.committed_unacked += 1
    counts.delivered = len(by_id)
    delivered_keys = set(ids_of_key)
    lost = sorted(ledger.acked - delivered_keys)
    counts.lost = len(lost)
    counts.problems.extend(f"lost: key {k!r}" for k in lost[:20])
    return counts


def scan_delivery(payload: bytes) -> Delivery:
    """A delivered scan event: its key is the scanned text (`data.raw`)."""
    envelope = json.loads(payload)
    data = envelope.get("data") or {}
    content = {"type": envelope.get("type"), "source": envelope.get("source"), **data}
    raw = data.get("raw")
    return Delivery(str(envelope["id"]), raw if isinstance(raw, str) else None, content, payload)


def table(title: str, counts: Counts) -> str:
    """A one-scenario counts table, as `make faults` prints it."""
    widths = [max(len(c), 7) for c in COLUMNS]
    head = " | ".join(c.rjust(w) for c, w in zip(COLUMNS, widths, strict=True))
    body = " | ".join(str(v).rjust(w) for v, w in zip(counts.row(), widths, strict=True))
    return f"\n{title}\n{head}\n{body}\n"
