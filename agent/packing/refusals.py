"""Why a packing station refuses a scan: an English reason, and a code with its params.

| `reason_code` | `reason_params` |
| --- | --- |
| `pack.unknown_code` | — (not an SSCC, a serialised item nor a `PACK:` instruction) |
| `pack.nothing_open` | — (add or close while no SSCC is open) |
| `pack.already_open` | `sscc` (`PACK:NEW` while one is open) |
| `pack.already_here` | `sscc` (the child is on the open SSCC already) |
| `pack.packed_elsewhere` | `child`, `sscc` (the child is in another open or closed SSCC) |
| `pack.open_elsewhere` | `sscc`, `station` (that SSCC is open at another station) |
| `pack.not_packed` | `child` (`PACK:REMOVE` of a child in no SSCC) |

A read that is no valid GS1 data (an SSCC with a wrong check digit) is refused with the scan's
own reason (`agent.scanning.rejections`: `gs1.check_digit`, …).
"""

from __future__ import annotations

from agent.scanning.rejections import Rejection


def unknown_code() -> Rejection:
    """Not an SSCC, a serialised item (GTIN + serial) nor an instruction."""
    return Rejection(
        "unknown code: scan an SSCC, a serialised item (GTIN + serial) or PACK:NEW, "
        "PACK:CLOSE, PACK:REMOVE",
        "pack.unknown_code",
    )


def nothing_open() -> Rejection:
    """A child or PACK:CLOSE while no SSCC is open."""
    return Rejection("no SSCC is open: scan PACK:NEW or an SSCC label first", "pack.nothing_open")


def already_open(sscc: str) -> Rejection:
    """PACK:NEW while an SSCC is open."""
    return Rejection(f"SSCC {sscc} is open: close it first", "pack.already_open", {"sscc": sscc})


def already_here(sscc: str) -> Rejection:
    """The child is on the open SSCC already."""
    return Rejection(f"already packed in SSCC {sscc}", "pack.already_here", {"sscc": sscc})


def packed_elsewhere(child: str, sscc: str) -> Rejection:
    """The child is in another SSCC (open or closed)."""
    return Rejection(
        f"{child} is already packed in SSCC {sscc}",
        "pack.packed_elsewhere",
        {"child": child, "sscc": sscc},
    )


def open_elsewhere(sscc: str, station: str) -> Rejection:
    """That SSCC is open at another packing station."""
    return Rejection(
        f"SSCC {sscc} is open at packing station {station}",
        "pack.open_elsewhere",
        {"sscc": sscc, "station": station},
    )


def not_packed(child: str) -> Rejection:
    """PACK:REMOVE of a child that is in no SSCC."""
    return Rejection(f"{child} is not packed in any SSCC", "pack.not_packed", {"child": child})
