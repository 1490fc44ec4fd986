"""The envelope's bytes: the field order of CONTRACTS.md, compact UTF-8 JSON, the seq filled in.

An event is encoded once, when it is made (`EventFactory.draft`: a head up to `"seq":` and a
tail from `,"source":` on); the outbox writes the seq between them inside the commit. What a
consumer receives is pinned here byte for byte, stored and read back through a real outbox.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from agent.events import EventFactory
from sync.outbox import Outbox

if TYPE_CHECKING:
    from pathlib import Path

EVENT_ID = "01JDQ2V8W7K3M5N9P0R4S6T8V0"
MOMENT = datetime(2026, 11, 24, 16, 1, 2, 345678, tzinfo=UTC)
DATA = {
    "raw": "]d2010950110153000310ABC\x1d21XYZ",
    "symbology": "gs1-datamatrix",
    "gs1": {"01": "09501101530003", "10": "ABC", "21": "XYZ"},
    "gtin": "09501101530003",
    "lot": "ABC",
    "serial": "XYZ",
    "note": "批次",
}
EXPECTED = (
    '{"id":"01JDQ2V8W7K3M5N9P0R4S6T8V0","type":"goods.received","time":"2026-11-24T16:01:02.345Z",'
    '"site":"plant-a","node":"line-3","seq":1042,"source":"scanner:dock-in-1","data":{'
    '"raw":"]d2010950110153000310ABC\\u001d21XYZ","symbology":"gs1-datamatrix",'
    '"gs1":{"01":"09501101530003","10":"ABC","21":"XYZ"},"gtin":"09501101530003","lot":"ABC",'
    '"serial":"XYZ","note":"批次"}}'
).encode()


def factory(*, synced: bool | None = True) -> EventFactory:
    return EventFactory("plant-a", "line-3", lambda: MOMENT, clock_synced=lambda: synced)


def test_an_envelope_is_these_bytes_with_its_seq_written_in() -> None:
    draft = factory().draft("goods.received", "scanner:dock-in-1", DATA, event_id=EVENT_ID)
    assert draft.payload(1042) == EXPECTED
    assert list(json.loads(draft.payload(7))) == [
        "id",
        "type",
        "time",
        "site",
        "node",
        "seq",
        "source",
        "data",
    ]
    unsynced = factory(synced=False).draft("goods.received", "scanner:dock-in-1", DATA)
    assert unsynced.payload(1).endswith(b',"clock_synced":false}')


async def test_the_outbox_stores_and_gives_back_exactly_those_bytes(tmp_path: Path) -> None:
    async with Outbox(tmp_path / "o.db", min_free_bytes=0) as outbox:
        for seq in range(1, 1042):  # the seq is the outbox's: the 1042nd event gets 1042
            draft = factory().draft("t", "x", {"n": seq})
            assert (await outbox.append(draft)).payload == draft.payload(seq)
        draft = factory().draft("goods.received", "scanner:dock-in-1", DATA, event_id=EVENT_ID)
        envelope = await outbox.append(draft)
        assert (envelope.seq, envelope.payload) == (1042, EXPECTED)
        stored = await outbox.get(1042)
        assert stored is not None
        assert stored.payload == EXPECTED
