"""One GS1 element string parsed as biip parses it, cheaply for what repeats between scans.

biip's `GS1ElementString.extract` (GTIN and date checks, dataclass copies) was most of the cost
of interpreting a scan. `extract_element` returns exactly what it returns, but parses the
predefined-length elements and the lot once (they repeat: same product, lot, expiry) and builds
the serial, new on every read, from biip's own pattern without biip's no-op steps.
"""

from __future__ import annotations

import functools
import re
import time

from biip import ParseConfig
from biip.gs1_application_identifiers import GS1ApplicationIdentifier
from biip.gs1_element_strings import GS1ElementString

GS = "\x1d"
CONFIG = ParseConfig(separator_chars=(GS,))
"""The parse configuration of scans: GS (ASCII 29) separates variable-length values."""

# Predefined-length AIs: the element is exactly this many characters (AI included), so its parse
# depends on those alone. With the lot (10) they repeat from scan to scan (same product, lot,
# expiry) and biip's parse of them (GTIN and date checks) is most of the cost of a scan.
_FIXED_ELEMENT_LENGTHS = {
    "00": 20,
    "01": 16,
    "02": 16,
    "11": 8,
    "12": 8,
    "13": 8,
    "15": 8,
    "16": 8,
    "17": 8,
}
_REPEATING_VARIABLE_AIS = frozenset({"10"})
# (21) has no GTIN, SSCC, GLN, date or decimal to check: matching its pattern is the whole parse
_SERIAL_AI = GS1ApplicationIdentifier.extract("21")
_SERIAL_VALUE = re.compile(_SERIAL_AI.pattern.removesuffix("$"))


def extract_element(rest: str) -> GS1ElementString:
    """The first element of `rest` (biip's extract), parsed once for repeating values."""
    ai = rest[:2]
    size = _FIXED_ELEMENT_LENGTHS.get(ai)
    if size is not None:
        # biip cuts the value at GS itself, so rest[:size] parses as rest does
        return _extract_repeating(rest[:size], time.localtime().tm_year)
    if ai in _REPEATING_VARIABLE_AIS:
        return _extract_repeating(rest.split(GS, 1)[0], time.localtime().tm_year)
    if ai == "21":  # the serial, new on every scan: biip's steps without its no-op checks
        match = _SERIAL_VALUE.match(rest.split(GS, 1)[0])
        if match is not None:
            groups = [group for group in match.groups() if group is not None]
            return GS1ElementString(ai=_SERIAL_AI, value="".join(groups), pattern_groups=groups)
    return GS1ElementString.extract(rest, config=CONFIG)


@functools.lru_cache(maxsize=2048)
def _extract_repeating(text: str, year: int) -> GS1ElementString:
    """One element as biip parses it (immutable); keyed by `year`: biip reads YYMMDD by it."""
    del year
    return GS1ElementString.extract(text, config=CONFIG)
