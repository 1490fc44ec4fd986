"""Work orders: what the line is making, and the checks an order from outside must pass.

`WorkOrder` is what the batch tracker runs under (work order id, GTIN, lot, planned quantity).
`WorkOrderCommand` is an order as it arrives from outside, from the MES over MQTT
(`cmd/work-order`) or from the status page's action: the same model checks both, with the text
rule of `agent.text` (work order and lot), a GTIN-14 with its check digit, and a JSON integer
quantity. `line` names the line it is for (required when the node has several lines:
`agent.batches.lines`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from agent.config.fields import ID_PATTERN, GtinText
from agent.text import LotText, Quantity, WorkOrderText  # noqa: TC001 (pydantic resolves it at runtime)


@dataclass(frozen=True, slots=True)
class WorkOrder:
    """What the MES (or a scan, or the status page) says the line is making."""

    work_order: str | None
    gtin: str | None
    lot: str | None = None
    planned_qty: int | None = None


class WorkOrderCommand(BaseModel):
    """`cmd/work-order`: what the line makes next. All fields null clears the work order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    work_order: WorkOrderText | None = Field(
        default=None, description="The MES work order id (1..64 printable characters)."
    )
    gtin: GtinText | None = Field(default=None, description="Product GTIN-14.")
    lot: LotText | None = Field(
        default=None,
        description="Lot of the batches of this work order, as GS1 AI 10 allows it (1..20 "
        "characters); default: from lot_template.",
    )
    planned_qty: Quantity | None = Field(
        default=None, description="Planned quantity: a JSON integer, 1..10**9."
    )
    line: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="The line (a PLC id with batch signals) it is for; required with several.",
    )
