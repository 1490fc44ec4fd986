"""`AckedSink`: a sink that reports each batch its inner sink acknowledged.

The benchmarks count deliveries with it (the MQTT drain's acknowledgement clock, the plant
store's drain): `send` goes through the real sink, and only once that returns, the callback
is told the batch. Everything else (the batch size, the window, opening and closing) is the
inner sink's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import TracebackType

    from sync.base import Envelope, Sink


class AckedSink:
    """The inner sink, calling `acknowledged(batch)` after each batch it took (implements Sink)."""

    def __init__(self, inner: Sink, acknowledged: Callable[[Sequence[Envelope]], None]) -> None:
        self._inner = inner
        self._acknowledged = acknowledged

    @property
    def max_batch(self) -> int:
        """As the inner sink."""
        return self._inner.max_batch

    @property
    def window(self) -> int:
        """As the inner sink."""
        return self._inner.window

    async def __aenter__(self) -> Self:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._inner.__aexit__(exc_type, exc, tb)

    async def send(self, batch: Sequence[Envelope]) -> None:
        """Send through the inner sink, then report the batch."""
        await self._inner.send(batch)
        self._acknowledged(batch)
