"""The Chinese status page words the agent's own texts in Chinese: a REAL agent in Chromium.

Real alarms (a scanner unplugged, a batch completed without a product) and real rejected reads
(wrong check digit, a control character, an unknown AI) written into the scanner's pty: the
server gives each a stable code and params besides its English text, and the zh page shows
alarm texts, rejection reasons and role names in Chinese. The English page keeps the server's
English.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from playwright.async_api import expect
from support import BROWSER_MARKS, chromium_page, csp_violations, wait_until
from test_status_e2e import BAD_SCAN, line_agent

from agent.batches.work_orders import WorkOrder

if TYPE_CHECKING:
    from pathlib import Path

    from support import Broker, Pty

pytestmark = BROWSER_MARKS

READS = [BAD_SCAN, b"AB\x07C\r\n", b"]C123ABC\r\n"]


async def test_zh_page_shows_real_alarms_reasons_and_roles_in_chinese(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    async with line_agent(tmp_path, broker, pty) as line:
        agent = line.agent
        for read in READS:
            pty.write(read)
        status = await line.until(lambda s: len(s["recent_scans"]) == 3, "three rejected reads")
        codes = {s["reason_code"] for s in status["recent_scans"]}
        assert codes == {"gs1.check_digit", "control_character", "gs1.unknown_ai"}
        check = next(s for s in status["recent_scans"] if s["reason_code"] == "gs1.check_digit")
        assert check["reason_params"] == {"kind": "GTIN", "value": "09501101530004", "expected": 3}
        assert "check digit" in check["reason"], "the English reason stays for API users"

        await agent.set_work_order(WorkOrder("WO-9", None))  # a work order without a product
        await line.plc.complete_batch(10)
        await wait_until(lambda: agent.alarms.is_active("no-product:filler"), what="no product")
        pty.unplug()
        await wait_until(lambda: agent.alarms.is_active("device:dock-in-1"), what="device alarm")
        status = await line.status()
        alarms = {a["id"]: a for a in status["alarms"]}
        assert alarms["device:dock-in-1"]["code"] == "device.disconnected"
        assert alarms["device:dock-in-1"]["params"]["device"] == "dock-in-1"
        assert alarms["no-product:filler"]["code"] == "batch.no_product"
        assert "no product" in alarms["no-product:filler"]["message"]

        async with chromium_page(line.url, locale="zh-CN") as (page, watch):
            shown = page.locator("#alarms")
            await expect(shown).to_contain_text("dock-in-1 已断开")
            await expect(shown).to_contain_text("filler：批次已完成，但没有产品（GTIN）")  # noqa: RUF001 (Chinese punctuation)
            reasons = page.locator("#scans .reason")
            await expect(reasons).to_have_count(3)
            await expect(reasons.nth(2)).to_contain_text(
                "GTIN “09501101530004” 的校验位错误，应为 3"  # noqa: RUF001 (Chinese punctuation)
            )
            await expect(reasons.nth(1)).to_contain_text("位置 2 有控制字符 0x07")
            await expect(reasons.nth(0)).to_contain_text("“23ABC” 处的应用标识符 (AI) 未知")
            devices = page.locator("#devices")
            await expect(devices).to_contain_text("扫描枪 · 收货")
            await expect(devices).to_contain_text("PLC · 握手")
            text = await page.locator("main").inner_text()
            for english in (
                "disconnected:",
                "no product",
                "check digit",
                "control character",
                "unknown application identifier",
                "inbound",
                "handshake",
                "system clock",
            ):
                assert english not in text, english
            await page.screenshot(path=str(tmp_path / "zh-alarms-reasons.png"), full_page=True)

            await page.locator("button[data-lang=en]").click()
            await expect(shown).to_contain_text("dock-in-1 disconnected")
            await expect(reasons.nth(2)).to_contain_text("Invalid GTIN check digit")
            await expect(devices).to_contain_text("Scanner · inbound")
            assert csp_violations(watch.console) == []
            assert watch.page_errors == []
