"""`[[printers]]` and `[packing]`: label printers (the driver's settings) and SSCC numbering.

A printer is a ZPL printer on raw TCP (`drivers.printers.zpl`); `print_on = "batch.completed"`
prints a batch label for each batch of its line (`line`, required when the node has several),
`""` prints only on request (a packing station's pallet labels). `template` names a ZPL
template file; what is in it is checked by `agent.printing.checks` (`check-config` refuses a
template with an unknown field), since this room knows no labels.

`[packing]` holds what an SSCC is made of: the GS1 company prefix (7 to 10 digits) and the
extension digit.
"""

from __future__ import annotations

from pathlib import Path  # noqa: TC003 (pydantic resolves it at runtime)
from typing import Literal

from pydantic import Field

from agent.config.fields import ID_PATTERN, Section
from drivers.printers.zpl import ZplPrinterSettings


class PrinterConfig(ZplPrinterSettings):
    """One label printer: its link, and which labels it prints."""

    id: str = Field(pattern=ID_PATTERN, description="Printer id, e.g. labeller-1.")
    print_on: Literal["batch.completed", ""] = Field(
        default="batch.completed",
        description='"batch.completed": a batch label when a batch completes; "": on request.',
    )
    template: Path | None = Field(
        default=None,
        description="A ZPL template file with named fields; default: the built-in GS1 label.",
    )
    line: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="The line whose batches it labels; required when the node has several.",
    )


class PackingSection(Section):
    """How SSCCs are numbered at this node's packing stations."""

    company_prefix: str = Field(
        default="",
        pattern=r"^(\d{7,10})?$",
        description="GS1 company prefix for SSCCs (7 to 10 digits).",
    )
    extension_digit: int = Field(
        default=0, ge=0, le=9, description="The SSCC's extension digit (0 to 9)."
    )
