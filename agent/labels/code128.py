"""Code 128 field data for ZPL's `^BC`: the fewest symbol characters, spelt with invocation codes.

Data is given as text in which GS (ASCII 29) stands for FNC1 (a GS1-128 symbol's data starts
with it). ZPL's `^BC` in mode N takes the subsets and functions as invocation codes in the field
data (Zebra's ZPL II Programming Guide, `^BC`, "Code 128 invocation characters"):

    >;  start in subset C        >:  start in subset B        >8  FNC1 (any subset)
    >5  CODE C (from subset B)   >6  CODE B (from subset C)   >0  a `>` in subset B

Subset C packs two digits into one symbol character; subset B holds the rest of GS1's character
set. An unpaired digit before a code change would be dropped by the printer, so the planner never
leaves one: it chooses start subset and switches by dynamic programming over the data, which gives
the shortest symbol (ISO/IEC 15417 only asks for a short one; GS1 limits a symbol's width).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agent.labels.errors import CodeError

FNC1 = "\x1d"
DIGITS = frozenset("0123456789")
QUIET_ZONE_MODULES = 10
# Printable ASCII that goes into subset B as itself or as `>0`: not `^` and `~` (ZPL's command
# prefixes) nor `\` (the `^FH\` hex indicator of our fields). GS1's 82 characters are all here.
_SUBSET_B = frozenset(chr(c) for c in range(32, 127)) - {"^", "~", "\\"}
_START = {"B": ">:", "C": ">;"}
_SWITCH_TO = {"B": ">6", "C": ">5"}  # CODE B is sent from subset C, CODE C from subset B
_INF = 1 << 30

Subset = Literal["B", "C"]
SUBSETS: tuple[Subset, Subset] = ("B", "C")


@dataclass(frozen=True, slots=True)
class Code128:
    """One Code 128 symbol: its ZPL field data and its size."""

    field_data: str
    codewords: int  # symbol characters between start and check character

    @property
    def modules(self) -> int:
        """Width in modules: start, data, check (11 each), stop (13), and both quiet zones."""
        return 11 * (self.codewords + 2) + 13 + 2 * QUIET_ZONE_MODULES


def _other(subset: Subset) -> Subset:
    return "C" if subset == "B" else "B"


def _step(data: str, i: int, subset: Subset) -> tuple[int, int]:
    """How many characters one symbol character takes at `i` in `subset` (0: it cannot)."""
    ch = data[i]
    if ch == FNC1:
        return 1, 1
    if subset == "B":
        return (1, 1) if ch in _SUBSET_B else (0, 0)
    if ch in DIGITS and i + 1 < len(data) and data[i + 1] in DIGITS:
        return 2, 1
    return 0, 0


def encode_code128(data: str) -> Code128:
    """The shortest Code 128 for `data` (GS = FNC1) as `^BC` mode N field data."""
    if not data:
        raise CodeError("a Code 128 symbol needs data")
    bad = sorted({ch for ch in data if ch != FNC1 and ch not in _SUBSET_B})
    if bad:
        raise CodeError(f"characters {bad!r} cannot be encoded in this Code 128 symbol")
    n = len(data)
    # cost[i][s]: symbol characters for data[i:] when subset s is active at i; switch[i][s]:
    # whether the best way first changes to the other subset.
    cost: list[dict[Subset, int]] = [{"B": _INF, "C": _INF} for _ in range(n)]
    cost.append({"B": 0, "C": 0})
    switch: list[dict[Subset, bool]] = [{"B": False, "C": False} for _ in range(n)]
    for i in range(n - 1, -1, -1):
        stay: dict[Subset, int] = {}
        for s in SUBSETS:
            taken, used = _step(data, i, s)
            stay[s] = used + cost[i + taken][s] if taken else _INF
        for s in SUBSETS:
            via_other = 1 + stay[_other(s)]
            cost[i][s], switch[i][s] = (
                (via_other, True) if via_other < stay[s] else (stay[s], False)
            )
    subset: Subset = "C" if cost[0]["C"] <= cost[0]["B"] else "B"  # never one that switches at once
    parts = [_START[subset]]
    codewords = 0
    i = 0
    while i < n:
        if switch[i][subset]:
            subset = _other(subset)
            parts.append(_SWITCH_TO[subset])
            codewords += 1
        taken, _ = _step(data, i, subset)
        chunk = data[i : i + taken]
        parts.append(">8" if chunk == FNC1 else ">0" if chunk == ">" else chunk)
        codewords += 1
        i += taken
    return Code128(field_data="".join(parts), codewords=codewords)
