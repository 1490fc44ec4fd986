"""A ZPL printer's host status (`~HS`): reading its answer, and what keeps it from printing.

On `~HS` a Zebra printer answers three strings, each `<STX>…<ETX><CR><LF>` (ZPL II
Programming Guide, `~HS`)::

    1  aaa,b,c,dddd,eee,f,g,h,iii,j,k,l   b paper out, c paused, dddd label length in dots,
                                           eee formats in the receive buffer, f buffer full,
                                           g diagnostic mode, h partial format, iii unused,
                                           j corrupt RAM, k under temperature, l over temperature
    2  mmm,n,o,p,q,r,s,t,uuuuuuuu,v,www    o head up (open), p ribbon out, q thermal transfer,
                                           r print mode, t label waiting, uuuuuuuu labels left
    3  xxxx,y                              password, static RAM installed

Current firmware sends nothing at all while media or ribbon is out, the head is open, the
rewinder is full or the head is too hot, so silence is a fault (`PrinterSilent`), never a
success. The answer is read with a size cap (`MAX_ANSWER_BYTES`) before it is parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from drivers.base import DeviceProtocolError

MAX_ANSWER_BYTES = 512  # a real answer is about 90 bytes
STATUS_REQUEST = b"~HS"
_FRAME = re.compile(rb"\x02([^\x02\x03]*)\x03")
_LINE_FIELDS = (12, 11, 2)  # fields of strings 1, 2 and 3


class PrinterSilent(DeviceProtocolError):
    """The printer did not answer the host status request in time."""


@dataclass(frozen=True, slots=True)
class HostStatus:
    """What a printer said about itself in one host status answer."""

    paper_out: bool
    paused: bool
    label_length_dots: int
    formats_in_buffer: int
    buffer_full: bool
    partial_format: bool
    corrupt_ram: bool
    under_temperature: bool
    over_temperature: bool
    head_open: bool
    ribbon_out: bool
    thermal_transfer: bool
    print_mode: int
    labels_remaining: int

    @property
    def faults(self) -> tuple[str, ...]:
        """What keeps the printer from printing, the cause first (a printer pauses on most)."""
        named = (
            (self.head_open, "head open"),
            (self.paper_out, "paper out"),
            (self.ribbon_out, "ribbon out"),
            (self.over_temperature, "head too hot"),
            (self.buffer_full, "buffer full"),
            (self.paused, "paused"),
        )
        return tuple(name for flag, name in named if flag)


def answer_complete(buffer: bytes) -> bool:
    """Whether `buffer` holds the three strings of an answer; `DeviceProtocolError` if too long."""
    if len(buffer) > MAX_ANSWER_BYTES:
        raise DeviceProtocolError(f"host status answer longer than {MAX_ANSWER_BYTES} bytes")
    return buffer.count(b"\x03") >= len(_LINE_FIELDS)


def parse_host_status(answer: bytes) -> HostStatus:
    """Parse a complete answer; `DeviceProtocolError` when it is not one."""
    frames = _FRAME.findall(answer)
    outside = _FRAME.sub(b"", answer).strip(b"\r\n")
    if len(frames) != len(_LINE_FIELDS) or outside:
        raise DeviceProtocolError(f"not a host status answer: {answer[:80]!r}")
    lines = []
    for frame, count in zip(frames, _LINE_FIELDS, strict=True):
        fields = frame.split(b",")
        if len(fields) < count or not all(f.strip().isdigit() for f in fields[:count]):
            raise DeviceProtocolError(f"not a host status answer: {answer[:80]!r}")
        lines.append([int(f) for f in fields[:count]])
    (_, paper, pause, length, formats, full, _, partial, _, ram, cold, hot) = lines[0]
    (_, _, head, ribbon, transfer, mode, _, _, remaining, _, _) = lines[1]
    return HostStatus(
        paper_out=paper == 1,
        paused=pause == 1,
        label_length_dots=length,
        formats_in_buffer=formats,
        buffer_full=full == 1,
        partial_format=partial == 1,
        corrupt_ram=ram == 1,
        under_temperature=cold == 1,
        over_temperature=hot == 1,
        head_open=head == 1,
        ribbon_out=ribbon == 1,
        thermal_transfer=transfer == 1,
        print_mode=mode,
        labels_remaining=remaining,
    )


def format_host_status(status: HostStatus) -> bytes:
    """The answer a printer in this state sends (for the simulator)."""

    def flag(value: bool) -> int:  # noqa: FBT001
        return int(value)

    s = status
    line1 = (
        f"030,{flag(s.paper_out)},{flag(s.paused)},{s.label_length_dots:04d},"
        f"{s.formats_in_buffer:03d},{flag(s.buffer_full)},0,{flag(s.partial_format)},000,"
        f"{flag(s.corrupt_ram)},{flag(s.under_temperature)},{flag(s.over_temperature)}"
    )
    line2 = (
        f"000,0,{flag(s.head_open)},{flag(s.ribbon_out)},{flag(s.thermal_transfer)},"
        f"{s.print_mode},6,0,{s.labels_remaining:08d},1,000"
    )
    return b"".join(b"\x02" + line.encode() + b"\x03\r\n" for line in (line1, line2, "1234,0"))
