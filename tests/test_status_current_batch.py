"""The status page's "Current batch" on a REAL running agent: what belongs to the open batch.

A line scanner (pty), the PLC simulator completing batches, mosquitto, SQLite. A work order
that arrives while the open batch already has materials applies from the next batch: until
then the open batch shows its own work order and planned quantity, and the new one is shown as
the next work order (in `/api/status` and on the page, in both languages).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from playwright.async_api import expect
from support import BROWSER_MARKS, chromium_page
from test_status_e2e import GTIN, line_agent

from agent.batches.work_orders import WorkOrder

if TYPE_CHECKING:
    from pathlib import Path

    from support import Broker, Pty

pytestmark = BROWSER_MARKS

MATERIAL = b"]d2010950110153001010MAT-7\r\n"  # another product's lot, consumed at the line


async def test_current_batch_shows_its_own_work_order_and_the_next_one_as_next(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    async with line_agent(tmp_path, broker, pty, role="line") as line:
        await line.agent.set_work_order(WorkOrder("WO-1", GTIN, None, 300))
        line.pty.write(MATERIAL)
        await line.until(
            lambda s: s["batch"] is not None and s["batch"]["materials"] == 1, "material consumed"
        )
        await line.agent.set_work_order(WorkOrder("WO-2", GTIN, None, 500))
        status = await line.until(
            lambda s: s["batch"].get("next_work_order") is not None, "the next work order shown"
        )
        batch = status["batch"]
        assert (batch["work_order"], batch["planned_qty"]) == ("WO-1", 300)
        following = batch["next_work_order"]
        assert (following["work_order"], following["planned_qty"]) == ("WO-2", 500)
        assert following["gtin"] == GTIN

        async with chromium_page(line.url) as (page, _):
            shown = page.locator("#lines .batch")
            await expect(shown).to_contain_text("WO-1")
            await expect(shown).to_contain_text("300")
            await expect(shown).to_contain_text("Next work order")
            await expect(shown).to_contain_text("WO-2 · 500")
            await page.locator("button[data-lang=zh]").click()
            await expect(shown).to_contain_text("下一工单")

        await line.complete_batch(quantity=300)
        status = await line.until(
            lambda s: s["batch"]["work_order"] == "WO-2", "the next batch runs WO-2"
        )
        batch = status["batch"]
        assert batch["planned_qty"] == 500
        assert batch["next_work_order"] is None
