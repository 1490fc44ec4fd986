"""The oracle itself: each class of failure is counted, and only where it belongs."""

from __future__ import annotations

import json

import pytest

from faults.oracle import COLUMNS, Counts, Delivery, Ledger, check, scan_delivery, table


def envelope(ident: str, raw: str, *, type_: str = "goods.received", seq: int = 1) -> bytes:
    return json.dumps(
        {
            "id": ident,
            "type": type_,
            "seq": seq,
            "source": "scanner:s",
            "data": {"raw": raw, "symbology": "unknown"},
        }
    ).encode()


def ledger_of(*keys: str, acked: tuple[str, ...] | None = None) -> Ledger:
    ledger = Ledger()
    for k in keys:
        ledger.sent(k, {"type": "goods.received", "source": "scanner:s", "raw": k})
    for k in keys if acked is None else acked:
        ledger.acknowledge(k)
    return ledger


def test_all_delivered_once_is_clean() -> None:
    ledger = ledger_of("A", "B")
    counts = check(ledger, [scan_delivery(envelope("1", "A")), scan_delivery(envelope("2", "B"))])
    assert counts.row() == (2, 2, 0, 0, 0, 0, 0)
    assert counts.ok


def test_lost_is_counted() -> None:
    counts = check(ledger_of("A", "B"), [scan_delivery(envelope("1", "A"))])
    assert (counts.lost, counts.ok) == (1, False)
    assert "lost: key 'B'" in counts.problems


def test_same_id_twice_is_a_duplicate_not_a_failure() -> None:
    p = envelope("1", "A")
    counts = check(ledger_of("A"), [scan_delivery(p), scan_delivery(p)])
    assert (counts.duplicated, counts.delivered, counts.ok) == (1, 1, True)


def test_same_id_with_other_bytes_is_distorted() -> None:
    counts = check(
        ledger_of("A"),
        [scan_delivery(envelope("1", "A")), scan_delivery(envelope("1", "A", seq=2))],
    )
    assert (counts.duplicated, counts.distorted, counts.ok) == (1, 1, False)


def test_content_unlike_the_ledger_is_distorted() -> None:
    counts = check(ledger_of("A"), [scan_delivery(envelope("1", "A", type_="goods.shipped"))])
    assert (counts.distorted, counts.lost) == (1, 0)


def test_unknown_key_is_unexpected() -> None:
    counts = check(
        ledger_of("A"), [scan_delivery(envelope("1", "A")), scan_delivery(envelope("2", "Z"))]
    )
    assert (counts.unexpected, counts.ok) == (1, False)


def test_second_id_for_one_key_is_unexpected() -> None:
    counts = check(
        ledger_of("A"), [scan_delivery(envelope("1", "A")), scan_delivery(envelope("2", "A"))]
    )
    assert counts.unexpected == 1
    assert "committed twice" in counts.problems[0]


def test_refused_but_delivered_is_unexpected() -> None:
    ledger = ledger_of("A", acked=())
    ledger.refuse("A")
    counts = check(ledger, [scan_delivery(envelope("1", "A"))])
    assert (counts.unexpected, counts.committed_unacked) == (1, 0)


def test_committed_but_unacknowledged_is_legitimate() -> None:
    counts = check(
        ledger_of("A", "B", acked=("A",)),
        [
            scan_delivery(envelope("1", "A")),
            scan_delivery(envelope("2", "B")),
        ],
    )
    assert counts.row() == (1, 2, 0, 0, 0, 0, 1)
    assert counts.ok


def test_unacknowledged_and_undelivered_is_not_lost() -> None:
    counts = check(ledger_of("A", "B", acked=("A",)), [scan_delivery(envelope("1", "A"))])
    assert (counts.lost, counts.ok) == (0, True)


def test_replies_map_to_reads_in_order() -> None:
    ledger = ledger_of("A", "B", "C", acked=())
    assert ledger.answers(["A", "B", "C"], b"\x06\x15", ack=b"\x06", nak=b"\x15") == 2
    assert ledger.acked == {"A"}
    assert ledger.refused == {"B"}
    with pytest.raises(ValueError, match="unknown reply"):
        ledger.answers(["C"], b"?", ack=b"\x06", nak=b"\x15")


def test_keys_are_unique() -> None:
    ledger = ledger_of("A")
    with pytest.raises(ValueError, match="unique"):
        ledger.sent("A", {})


def test_event_without_key_is_unexpected() -> None:
    counts = check(Ledger(), [Delivery("1", None, {}, b"{}")])
    assert counts.unexpected == 1


def test_table_has_every_column() -> None:
    text = table("scenario", Counts(ledger=3, delivered=3))
    assert "scenario" in text
    assert all(c in text for c in COLUMNS)
