"""The plant view's page in Chromium: fleet first, trace, reconciliation, downloads, Chinese, login.

Three real agents (`plant_agents`) deliver to the module's PostgreSQL and the test's mosquitto;
`lineside plant serve` serves the page on a free port; Debian's Chromium (Playwright) reads it.
No page error and no Content-Security-Policy violation is allowed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
from plant_agents import PALLET_OUT, plant_config, three_nodes
from playwright.async_api import expect
from support import BROWSER_MARKS, chromium_page, csp_violations
from test_e2e_plant_view import plant_view

if TYPE_CHECKING:
    from pathlib import Path

    from plant_support import Plant
    from support import Broker

pytestmark = BROWSER_MARKS


async def test_the_plant_page(tmp_path: Path, broker: Broker, plant: Plant) -> None:
    password = tmp_path / "plant-admin.pw"
    password.write_text("plant-admin\n")
    config = plant_config(
        tmp_path, plant, broker, listen="127.0.0.1:0", admin_password_file=str(password)
    )
    async with (
        three_nodes(tmp_path, broker, plant) as nodes,
        plant_view(config) as client,
        chromium_page(str(client.base_url)) as (page, watch),
    ):
        rows = page.locator("#fleet tr")
        await expect(rows).to_have_count(3, timeout=20_000)
        for node in ("dock-in", "line-1", "dock-out"):
            row = page.locator(f'#fleet tr[data-node="{node}"]')
            await expect(row).to_contain_text("online", timeout=20_000)
        await expect(page.locator("#headline-text")).to_have_text("All 3 nodes online")
        await expect(page.locator("#site")).to_have_text("plant-a")

        await page.fill("#trace-form input[name=code]", PALLET_OUT)
        await page.click("#trace-go")
        await expect(page.locator("#trace-result")).to_contain_text("MAT-A")
        await expect(page.locator("#trace-result")).to_contain_text("dock-in")
        await expect(page.locator("#trace-nodes")).to_contain_text("dock-in, dock-out, line-1")
        await page.fill("#trace-form input[name=code]", "NO-SUCH-CODE")
        await page.click("#trace-go")
        await expect(page.locator("#trace-result")).to_have_text(
            "No node of this plant has a history of this code."
        )

        lot_row = page.locator("#reconciliation tr")
        await expect(lot_row).to_have_count(1)
        await expect(lot_row).to_contain_text(nodes.lot)
        await expect(lot_row).to_contain_text("balanced")
        link = lot_row.locator("a", has_text="FSMA204")
        href = await link.get_attribute("href")
        assert href is not None
        async with httpx.AsyncClient(base_url=str(client.base_url)) as http:
            download = await http.get(href)
        assert download.status_code == 200
        assert download.text.startswith("cte,traceability_lot_code,gtin,")

        await page.click('button[data-lang="zh"]')
        await expect(page.locator("#fleet-card h2")).to_have_text("节点")
        await expect(page.locator("#headline-text")).to_have_text("全部 3 个节点在线")
        await expect(page.locator('#fleet tr[data-node="dock-in"]')).to_contain_text("在线")

        await page.fill("#login-form input[name=password]", "plant-admin")
        await page.click("#login-form button")
        await expect(page.locator("#actions")).to_be_visible()
        await page.click("#partitions")
        await expect(page.locator("#action-message")).to_contain_text("完成")

        assert not watch.page_errors, watch.page_errors
        assert not csp_violations(watch.console), watch.console
