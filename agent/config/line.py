"""`[line]` and `[plcs.line]`: a line's product when no work order names one, and its codes.

`[line]` holds the node's defaults; a line PLC's own `[plcs.line]` (`LineProduct`) may set any
of the product keys again for that line alone, and its missing keys fall back to `[line]`
(`LineSection.merged`). The lot and trace-code templates are checked when the file is read: a
field a template names must be one the batch tracker fills in.
"""

from __future__ import annotations

import string
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agent.config.fields import GtinText, Section

_TEMPLATE_FIELDS = {
    "lot": {"node", "site", "date", "batch", "work_order"},
    "trace": {"gtin", "lot", "date", "serial", "node", "site"},
}


def _check_template(template: str, allowed: set[str]) -> str:
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ValueError(f"bad template: {exc}") from exc
    unknown = {n.split(".")[0].split("[")[0] for n in names} - allowed
    if unknown:
        raise ValueError(
            f"unknown field(s) {sorted(unknown)} in template; allowed: {sorted(allowed)}"
        )
    return template


MIN_RANDOM_WIDTH = 12
"""Random serials have at least this many digits."""


class LineSection(Section):
    """What this line makes when no work order says otherwise, and how codes are composed."""

    gtin: GtinText | None = Field(
        default=None, description="Product GTIN-14 when no work order is active."
    )
    lot_template: str = Field(
        default="{node}{date:%y%m%d}{batch:02d}",
        description="Lot of a batch: fields node, site, date, batch (no. of the day), work_order.",
    )
    trace_template: str = Field(
        default="(01){gtin}(10){lot}(11){date:%y%m%d}(21){serial}",
        description="Trace code as a GS1 element string: fields gtin, lot, date, serial.",
    )
    serial_width: int = Field(
        default=6,
        ge=1,
        le=20,
        description="Serials are zero-padded to this many digits (random: this long, >= 12).",
    )
    serial_mode: Literal["sequential", "random"] = Field(
        default="sequential",
        description='"sequential" counts per GTIN; "random": digits from the OS CSPRNG.',
    )
    work_order_prefix: str | None = Field(
        default="WO:",
        description="A line scan starting with this sets the work order (none: disabled).",
    )
    operator_prefix: str | None = Field(
        default="OP:",
        description="A line scan starting with this is an operator badge (none: disabled).",
    )

    @field_validator("lot_template")
    @classmethod
    def _lot_fields(cls, value: str) -> str:
        return _check_template(value, _TEMPLATE_FIELDS["lot"])

    @field_validator("trace_template")
    @classmethod
    def _trace_fields(cls, value: str) -> str:
        return _check_template(value, _TEMPLATE_FIELDS["trace"])

    @model_validator(mode="before")
    @classmethod
    def _random_width(cls, data: Any) -> Any:
        """Random serials are 12 digits unless `serial_width` says more; never fewer."""
        if isinstance(data, dict) and data.get("serial_mode") == "random":
            data = {**data}
            width = data.setdefault("serial_width", MIN_RANDOM_WIDTH)
            if isinstance(width, int) and width < MIN_RANDOM_WIDTH:
                raise ValueError(
                    f"serial_width: must be at least {MIN_RANDOM_WIDTH} when serial_mode is "
                    f"random (a serial must not be guessable), got {width}"
                )
        return data

    def merged(self, own: LineProduct | None) -> LineSection:
        """The settings of one line: its own `[plcs.line]` keys, else these."""
        if own is None:
            return self
        return self.model_copy(update=own.model_dump(exclude_unset=True))


class LineProduct(Section):
    """`[plcs.line]`: one line's own product settings; a key left out is `[line]`'s."""

    gtin: GtinText | None = Field(
        default=None, description="This line's product GTIN-14 when no work order names one."
    )
    lot_template: str | None = Field(
        default=None, description="This line's lot template (the fields of line.lot_template)."
    )
    trace_template: str | None = Field(
        default=None,
        description="This line's trace-code template (the fields of line.trace_template).",
    )
    serial_width: int | None = Field(
        default=None, ge=1, le=20, description="This line's serials are zero-padded to this width."
    )

    @field_validator("lot_template")
    @classmethod
    def _lot_fields(cls, value: str | None) -> str | None:
        return None if value is None else _check_template(value, _TEMPLATE_FIELDS["lot"])

    @field_validator("trace_template")
    @classmethod
    def _trace_fields(cls, value: str | None) -> str | None:
        return None if value is None else _check_template(value, _TEMPLATE_FIELDS["trace"])
