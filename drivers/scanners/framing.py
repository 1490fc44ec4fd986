"""Terminator framing of a scanner's byte stream, with bounded memory and no I/O.

`TerminatorFramer` turns arbitrary chunks (one scan split over several reads, several scans in
one read) into frames. It never holds more than `max_frame` plus one terminator's worth of
bytes: a frame that grows past the limit is reported once as an error and the rest of it is
discarded up to the next terminator. The caller decides when a partial frame has been idle too
long (`expire`) or when the link went away (`flush`); both turn the partial frame into an error,
so it is never glued to the next scan.
"""

from __future__ import annotations

from dataclasses import dataclass

INCOMPLETE = "incomplete frame (no terminator)"
INCOMPLETE_AT_DISCONNECT = "incomplete frame at disconnect (no terminator)"


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame cut from the stream: its bytes, or what was kept of it and why it is unusable."""

    data: bytes
    error: str | None = None


class TerminatorFramer:
    """Cuts a byte stream into frames at a terminator; see the module docstring."""

    def __init__(self, *, terminator: bytes, max_frame: int) -> None:
        if not terminator:
            raise ValueError("terminator must not be empty")
        if max_frame < 1:
            raise ValueError("max_frame must be at least 1")
        self._terminator = terminator
        self._max_frame = max_frame
        self._buffer = bytearray()
        self._discarding = False

    @property
    def too_long(self) -> str:
        """The error of a frame past the size limit."""
        return f"frame longer than {self._max_frame} bytes"

    @property
    def pending(self) -> bool:
        """Whether bytes of an unfinished frame are held (or an over-long one is being skipped)."""
        return bool(self._buffer) or self._discarding

    def feed(self, chunk: bytes) -> list[Frame]:
        """Add received bytes; return the frames they complete, in order (empty ones dropped)."""
        self._buffer += chunk
        frames: list[Frame] = []
        term = self._terminator
        start = 0
        while (end := self._buffer.find(term, start)) >= 0:
            body = bytes(self._buffer[start:end])
            start = end + len(term)
            if self._discarding:
                # The tail of a frame already reported as too long.
                self._discarding = False
            elif len(body) > self._max_frame:
                frames.append(Frame(body[: self._max_frame], self.too_long))
            elif body:
                frames.append(Frame(body))
        del self._buffer[:start]
        # Bytes that could still be the start of a terminator must be kept to find it later;
        # anything beyond the limit plus those bytes is certainly an over-long frame.
        keep = len(term) - 1
        if self._discarding:
            del self._buffer[: max(0, len(self._buffer) - keep)]
        elif len(self._buffer) > self._max_frame + keep:
            frames.append(Frame(bytes(self._buffer[: self._max_frame]), self.too_long))
            self._discarding = True
            del self._buffer[: len(self._buffer) - keep]
        return frames

    def expire(self) -> Frame | None:
        """Give up on an idle partial frame: return it as an error and start afresh.

        When only the tail of an over-long frame was being skipped (already reported), nothing
        is returned; the framer just stops skipping so the next scan is read whole.
        """
        discarding, self._discarding = self._discarding, False
        data = bytes(self._buffer)
        self._buffer.clear()
        if discarding or not data:
            return None
        return Frame(data, INCOMPLETE)

    def flush(self) -> Frame | None:
        """Return a partial frame as an error when the link went away (never as a scan)."""
        frame = self.expire()
        return None if frame is None else Frame(frame.data, INCOMPLETE_AT_DISCONNECT)
