"""File destination files roll by count and by age: real outbox, publisher and file sink."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING

from support import wait_until

from agent.events import EventFactory
from sync.files import FileDestinationConfig, FileSink
from sync.outbox import Outbox
from sync.publisher import Publisher

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


@contextlib.asynccontextmanager
async def delivering(tmp_path: Path, *, per_file: int, age_s: float) -> AsyncIterator[Outbox]:
    config = FileDestinationConfig(
        name="qms",
        kind="file",
        dir=tmp_path / "drop",
        format="jsonl",
        max_events_per_file=per_file,
        max_file_age_s=age_s,
    )
    config.dir.mkdir()
    async with Outbox(tmp_path / "outbox.db", destinations=["qms"]) as outbox:
        publisher = Publisher(outbox, "qms", lambda: FileSink(config), routes=frozenset({"*"}))
        task = asyncio.create_task(publisher.run(), name="sync:qms")
        try:
            yield outbox
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def files(drop: Path) -> list[list[int]]:
    return [
        [json.loads(line)["seq"] for line in f.read_text().splitlines()]
        for f in sorted(drop.glob("lineside-*.jsonl"))
    ]


async def test_a_burst_rolls_by_count(tmp_path: Path) -> None:
    factory = EventFactory("plant-a", "line-3")
    async with delivering(tmp_path, per_file=50, age_s=30) as outbox:
        await outbox.append_many(
            [factory.draft("goods.received", "test", {"raw": str(i)}) for i in range(120)]
        )
        # 50 + 50 at once; the last 20 wait for their file's age, so not yet
        await wait_until(lambda: len(files(tmp_path / "drop")) == 2, what="two full files")
        assert files(tmp_path / "drop") == [list(range(1, 51)), list(range(51, 101))]


async def test_a_trickle_rolls_by_age_into_one_file(tmp_path: Path) -> None:
    factory = EventFactory("plant-a", "line-3")
    async with delivering(tmp_path, per_file=1000, age_s=1.5) as outbox:
        for i in range(10):
            await outbox.append(factory.draft("goods.received", "test", {"raw": str(i)}))
            await asyncio.sleep(0.02)
        assert files(tmp_path / "drop") == []  # younger than max_file_age_s: still collecting
        await wait_until(lambda: bool(files(tmp_path / "drop")), what="the file rolled by age")
        assert files(tmp_path / "drop") == [list(range(1, 11))]
