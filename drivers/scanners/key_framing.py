"""Scans out of decoded keystrokes: the serial scanners' framer, plus the keyboard's own faults.

A keyboard-wedge scan is text that ends at a key, not at a byte. `KeyScanFramer` feeds the
decoded text (UTF-8) to the serial scanners' `framing.TerminatorFramer` and the end-of-scan key
as the byte 0xFF, which never occurs in UTF-8; so the frame limit, the over-long error, the idle
expiry and the incomplete-frame errors are exactly the serial scanners'. What only a keyboard has
— a key the keymap cannot type, lost events — is a `KeyFault`: it is carried to the end of its
scan and becomes that frame's error (a scan of nothing but a bad key is still reported, with no
data).
Pure, no I/O.
"""

from __future__ import annotations

from drivers.scanners.framing import INCOMPLETE, INCOMPLETE_AT_DISCONNECT, Frame, TerminatorFramer
from drivers.scanners.key_decoder import Decoded, EndOfScan, KeyFault

END_BYTE = b"\xff"


class KeyScanFramer:
    """Frames decoded keystrokes with the serial framer, carrying key faults to the frame."""

    def __init__(self, *, max_frame: int) -> None:
        self._framer = TerminatorFramer(terminator=END_BYTE, max_frame=max_frame)
        self._fault: str | None = None
        self._reported = False  # the frame in progress was already reported as too long

    @property
    def pending(self) -> bool:
        """Whether a scan is in progress (text held, or a fault waiting for its scan's end)."""
        return self._framer.pending or self._fault is not None

    def push(self, item: Decoded) -> list[Frame]:
        """Add what one key typed; return the frames it completes."""
        if isinstance(item, KeyFault):
            if self._fault is None and not self._reported:
                self._fault = item.reason
            return []
        if isinstance(item, EndOfScan):
            frames = self._framer.feed(END_BYTE)
            fault, reported = self._fault, self._reported
            self._fault, self._reported = None, False
            if fault is None:
                return frames
            if frames:
                return [Frame(frames[0].data, fault)]
            return [] if reported else [Frame(b"", fault)]
        frames = self._framer.feed(item.encode())
        if frames:  # over-long: reported now, the rest of the scan is skipped
            self._fault, self._reported = None, True
        return frames

    def expire(self) -> Frame | None:
        """Give up on an idle partial scan (an incomplete-frame error, as for serial)."""
        return self._end(self._framer.expire(), INCOMPLETE)

    def flush(self) -> Frame | None:
        """The partial scan left when the link went away, as an error."""
        return self._end(self._framer.flush(), INCOMPLETE_AT_DISCONNECT)

    def _end(self, frame: Frame | None, error: str) -> Frame | None:
        fault, reported = self._fault, self._reported
        self._fault, self._reported = None, False
        if frame is None and fault is not None and not reported:
            return Frame(b"", error)
        return frame
