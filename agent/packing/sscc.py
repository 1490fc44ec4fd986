"""New SSCCs: extension digit, GS1 company prefix, the next serial reference, the check digit.

The serial reference is a counter (`sscc:next` in the outbox's state) committed in the same
transaction as the pallet it opens (and its label's print job), so an SSCC is never given
twice, also across a kill -9: one allocated but not committed was on no label. The check digit
and the whole SSCC are biip's (`Sscc.parse` verifies what we compose).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from biip.checksums import gs1_standard_check_digit
from biip.sscc import Sscc

if TYPE_CHECKING:
    from agent.config.printers import PackingSection
    from agent.packing.contents import StateReader

SSCC_PAYLOAD = 17  # digits before the check digit
NEXT_KEY = "sscc:next"


class SsccExhausted(Exception):
    """Every serial reference of the company prefix is used."""


def next_sscc(store: StateReader, packing: PackingSection) -> tuple[str, dict[str, str]]:
    """The next SSCC and the state to commit with it."""
    number = int(store.state(NEXT_KEY) or "1")
    digits = SSCC_PAYLOAD - 1 - len(packing.company_prefix)
    if number >= 10**digits:
        raise SsccExhausted(
            f"all {10**digits - 1} serial references of company prefix "
            f"{packing.company_prefix} are used"
        )
    payload = f"{packing.extension_digit}{packing.company_prefix}{number:0{digits}d}"
    sscc = Sscc.parse(payload + str(gs1_standard_check_digit(payload))).value
    return sscc, {NEXT_KEY: str(number + 1)}
