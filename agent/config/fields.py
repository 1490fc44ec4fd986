"""What every config section shares: the closed, frozen model base and the common field types.

`Section` forbids unknown keys and is frozen (the config is loaded once and passed down, never
changed); `ID_PATTERN` is the shape of every id (site, node, scanner, PLC); `GtinText` is a
GTIN-14 whose check digit is right (the line's product, a work order's).
"""

from __future__ import annotations

from typing import Annotated

from biip import ParseError
from biip.checksums import gs1_standard_check_digit
from biip.gtin import Gtin
from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Section(BaseModel):
    """A table of the config file: unknown keys refused, frozen once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Site, node, scanner and PLC ids: 1 to 64 letters, digits, `_`, `.` or `-`."""


def _valid_gtin(value: str) -> str:
    """A GTIN-14 (the pattern checked its 14 digits) whose check digit is right."""
    expected = gs1_standard_check_digit(value[:-1])
    if int(value[-1]) != expected:
        raise ValueError(f"the check digit of {value!r} is wrong: it must end in {expected}")
    try:
        Gtin.parse(value)
    except ParseError as exc:
        raise ValueError(f"{value!r} is not a valid GTIN: {exc}") from exc
    return value


GtinText = Annotated[str, Field(pattern=r"^\d{14}$"), AfterValidator(_valid_gtin)]
"""A GTIN-14 with a valid check digit."""
