"""The outbox's cursor book (`sync.outbox_cursors`): forward only, written lazily, handed back."""

from __future__ import annotations

import asyncio

import pytest

from sync.outbox_cursors import CURSOR_PERSIST_DELAY_S, Cursors, Generation


async def test_cursors_move_forward_and_ask_once_to_be_written() -> None:
    due = asyncio.Event()
    calls = 0

    def persist_due() -> None:
        nonlocal calls
        calls += 1
        due.set()

    book = Cursors(["a", "b"], persist_due=persist_due)
    book.load([("a", 5), ("c", 2)])
    assert book.destinations == {"a", "b", "c"}
    assert book.lowest() == 0  # b has no cursor yet
    book.advance("a", 3)  # behind: ignored
    assert not book.moved
    book.advance("b", 4)
    book.advance("b", 7)
    assert book.moved
    await asyncio.wait_for(due.wait(), CURSOR_PERSIST_DELAY_S * 20)
    assert calls == 1  # one timer for every move before the write
    assert book.take_moved() == [("b", 7)]
    assert not book.moved
    assert book.lowest() == 2


async def test_a_failed_write_hands_the_rows_back_and_a_rewind_counts() -> None:
    book = Cursors([], persist_due=lambda: None)
    book.advance("a", 9)
    rows = book.take_moved()
    book.put_back(rows)
    assert book.take_moved() == [("a", 9)]
    book.rewind("a", 2)
    book.released("a")
    assert book.seqs["a"] == 2
    assert book.take_moved() == [("a", 2)]
    assert book.generation("a") == Generation(rewinds=1, releases=1)
    assert book.generation("other") == Generation(0, 0)
    with pytest.raises(ValueError, match="negative"):
        book.rewind("a", -1)
