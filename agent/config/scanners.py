"""`[[scanners]]`: each barcode scanner's link (the driver's settings) and its station role.

A scanner is read over a serial port or TCP (`port` or `url`: `drivers.scanners.serial`) or, as
a USB keyboard-wedge scanner, from its Linux input device (`hid`: `drivers.scanners.hid`);
which one is told by the `hid` key, joined into `ScannerConfig`. The role decides what a scan
means (`agent.scanning.interpret`): inbound dock → goods received, outbound dock → goods
shipped, line → material consumed into the running batch of the line the scanner names
(`line`, required when the node has several lines; checked in `root`), packing → pallets built
(`agent.packing`), their new SSCCs' labels printed on `printer`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, ClassVar, Literal, Self

from pydantic import BaseModel, Discriminator, Field, Tag, model_validator

from agent.config.fields import ID_PATTERN
from drivers.scanners.hid import HidScannerSettings
from drivers.scanners.serial import ScannerSettings


class StationRole(StrEnum):
    """What a scanner's station does, which decides what its scans mean."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"
    LINE = "line"
    PACKING = "packing"


class _ScannerFields(BaseModel):
    """What every scanner has, whatever its link: its id and what its scans mean."""

    id: str = Field(pattern=ID_PATTERN, description="Scanner id, e.g. dock-in-1.")
    role: StationRole = Field(
        description="inbound → goods.received, outbound → goods.shipped, line → consumed, "
        "packing → aggregation (SSCCs)."
    )
    line: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="The line (a PLC id with [plcs.batch]) a line scanner feeds; required when "
        "the node has several lines.",
    )
    printer: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="A packing station's printer (a [[printers]] id): the label of each new SSCC.",
    )


class SerialScannerConfig(ScannerSettings, _ScannerFields):
    """A scanner on a serial port (`port`) or over TCP (`url`)."""

    branch_hint: ClassVar[str] = "serial and TCP scanners (port or url), not with hid"

    @model_validator(mode="after")
    def check_link(self) -> Self:
        """Exactly one of `port` and `url` (or else `hid`, which is the other branch)."""
        if (self.port is None) == (self.url is None):
            raise ValueError(
                "give exactly one of port (a serial device path), url (e.g. socket://host:port)"
                ' or hid (a USB keyboard-wedge scanner: hid = "/dev/input/by-id/…-event-kbd")'
            )
        return self


class HidScannerConfig(HidScannerSettings, _ScannerFields):
    """A USB keyboard-wedge scanner read from its input device (`hid`); no back channel."""

    branch_hint: ClassVar[str] = 'HID scanners (hid = "/dev/input/by-id/…-event-kbd")'


def scanner_link(entry: object) -> Literal["hid", "serial"]:
    """Which branch a `[[scanners]]` entry is: `hid` when it has an `hid` key, else `serial`."""
    if isinstance(entry, dict):
        return "hid" if "hid" in entry else "serial"
    return "hid" if isinstance(entry, HidScannerConfig) else "serial"


ScannerConfig = Annotated[
    Annotated[SerialScannerConfig, Tag("serial")] | Annotated[HidScannerConfig, Tag("hid")],
    Discriminator(scanner_link),
]
"""One scanner: serial/TCP, or a USB keyboard-wedge (HID) scanner when it has `hid`."""
