"""The status page of a REAL running agent in Chromium: scans written into a pty, a PLC simulator
completing batches, mosquitto stopped and started; escaping, language, login and actions, and
screenshots at 1280x800 and phone width (saved in tmp_path; look at them when changing the page).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from playwright.async_api import Page, expect
from support import BROWSER_MARKS, chromium_page, csp_violations
from test_status_e2e import GOOD_SCAN, PASSWORD, LineAgent, line_agent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from support import Broker, Pty

XSS_SCRIPT = "<script>window.__xss=1</script>"
XSS_IMG = '<img src=x onerror="window.__xss=1">'

pytestmark = BROWSER_MARKS


@dataclass
class Browsing:
    """A Chromium page on the agent's status page, and what the console said."""

    page: Page
    line: LineAgent
    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def csp_violations(self) -> list[str]:
        return csp_violations(self.console)

    async def phone_overflow(self) -> int:
        """How far the page scrolls sideways (0 when it fits)."""
        width: int = await self.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        return width


@contextlib.asynccontextmanager
async def browsing(
    line: LineAgent, *, locale: str = "en-US", width: int = 1280, height: int = 800
) -> AsyncIterator[Browsing]:
    """Chromium (the system's, never a downloaded one) showing the agent's page."""
    async with chromium_page(line.url, locale=locale, width=width, height=height) as (page, w):
        yield Browsing(page, line, w.console, w.page_errors)


async def test_live_scans_batches_and_escaping_on_the_real_agent(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    async with line_agent(tmp_path, broker, pty) as line, browsing(line) as b:
        page = b.page
        headline = page.locator("#headline")
        # Events flow: never red. Amber only for warnings such as an unsynchronised clock.
        await expect(headline).to_have_class(_class_ok_or_warn())
        if line.agent.state.clock_synced is False:
            await expect(page.locator("#headline-text")).to_have_text("Clock not synchronised")
            await expect(page.locator("#headline-detail")).to_contain_text(
                "devices connected, events delivered"
            )
        devices = page.locator("#devices")
        await expect(devices).to_contain_text("dock-in-1")
        await expect(devices).to_contain_text("filler")
        await expect(devices).to_contain_text("PLC · handshake")
        # the simulator's probe reads 4.0 °C with noise: 3.8x to 4.1x, never the same twice
        await expect(devices).to_contain_text(re.compile(r"fill_temp_c (3\.[89]|4\.[01])\d*"))
        await expect(page.locator("#destinations")).to_contain_text("plant-broker")
        await expect(page.locator("#lines .batch")).to_contain_text("09501101530003")

        line.pty.write(GOOD_SCAN)
        await expect(page.locator("#scans")).to_contain_text("]d2010950110153000310LOT42")
        line.pty.write(XSS_SCRIPT.encode() + b"\r\n")
        line.pty.write(b"]C1" + XSS_IMG.encode() + b"\r\n")  # not GS1: rejected
        await expect(page.locator("#scans")).to_contain_text(XSS_SCRIPT)
        rejected = page.locator("#scans .rejected")
        await expect(rejected).to_contain_text(XSS_IMG)
        await expect(rejected.locator(".reason")).to_contain_text("rejected:")
        assert await page.locator("#scans img, #scans script").count() == 0
        assert await page.evaluate("typeof window.__xss") == "undefined"

        code = await line.complete_batch(quantity=120)
        await expect(page.locator("#lines .batches")).to_contain_text(code)
        await page.screenshot(path=str(tmp_path / "real-1280.png"))
        await page.screenshot(path=str(tmp_path / "real-1280-full.png"), full_page=True)

        await page.set_viewport_size({"width": 375, "height": 800})
        await expect(page.locator("#headline-text")).to_be_visible()
        assert await b.phone_overflow() <= 0, "the page scrolls sideways on a phone"
        await page.screenshot(path=str(tmp_path / "real-375.png"), full_page=True)
        assert b.csp_violations() == []
        assert b.page_errors == []


def _class_ok_or_warn() -> re.Pattern[str]:
    return re.compile(r"^headline (ok|warn)$")


async def test_broker_outage_turns_the_headline_red_and_back(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    async with line_agent(tmp_path, broker, pty) as line, browsing(line) as b:
        page = b.page
        await expect(page.locator("#headline")).to_have_class(_class_ok_or_warn())
        broker.stop()
        line.pty.write(b"DURING-OUTAGE\r\n")
        await expect(page.locator("#headline")).to_have_class("headline bad", timeout=15_000)
        await expect(page.locator("#headline-text")).to_contain_text("Broker unreachable")
        await expect(page.locator("#destinations")).to_contain_text("disconnected")
        await page.screenshot(path=str(tmp_path / "broker-down.png"))
        broker.start()
        await expect(page.locator("#headline")).to_have_class(_class_ok_or_warn(), timeout=30_000)
        assert b.csp_violations() == []


async def test_language_switch_on_the_real_agent(tmp_path: Path, broker: Broker, pty: Pty) -> None:
    async with line_agent(tmp_path, broker, pty) as line, browsing(line) as b:
        page = b.page
        await expect(page.locator("#devices")).to_contain_text("dock-in-1")
        await page.locator("button[data-lang=zh]").click()
        await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        await expect(page.locator("h2").first).to_have_text("报警")
        await expect(page.locator("#devices")).to_contain_text("扫描枪")
        if line.agent.state.clock_synced is False:
            await expect(page.locator("#headline-text")).to_have_text("系统时钟未同步")
        else:
            await expect(page.locator("#headline-text")).to_have_text("所有系统正常")
        await page.screenshot(path=str(tmp_path / "real-zh.png"))
        await page.locator("button[data-lang=en]").click()
        await expect(page.locator("h2").first).to_have_text("Alarms")
    (tmp_path / "zh").mkdir()
    async with (
        line_agent(tmp_path / "zh", broker, pty, password=False) as line,
        browsing(line, locale="zh-CN") as b,
    ):
        await expect(b.page.locator("h2").first).to_have_text("报警")
        await expect(b.page.locator("#actions-disabled")).to_be_visible()
        await expect(b.page.locator("#login-form")).to_be_hidden()
        assert b.csp_violations() == []


async def post_status(page: Page, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    """POST from inside the page (same origin, the browser's cookies); the HTTP status."""
    return await page.evaluate(
        """async ([path, body, headers]) => {
            const r = await fetch(path, {method: "POST", credentials: "same-origin",
              headers: {"Content-Type": "application/json", ...headers},
              body: JSON.stringify(body)});
            return r.status;
        }""",
        [path, body, headers],
    )


async def test_login_then_work_order_batch_and_alarm_ack(
    tmp_path: Path, broker: Broker, pty: Pty
) -> None:
    async with line_agent(tmp_path, broker, pty) as line, browsing(line) as b:
        page = b.page
        order = {"work_order": "WO-EVIL"}
        path = "/api/actions/work-order"
        assert await post_status(page, path, order, {}) == 401, "no login"

        await page.locator("#login-form input[name=password]").fill("wrong")
        await page.locator("#login-form button[type=submit]").click()
        await expect(page.locator("#action-message")).to_contain_text("wrong password")
        await page.locator("#login-form input[name=password]").fill(PASSWORD)
        submit = page.locator("#login-form button[type=submit]")
        async with asyncio.timeout(10):  # right after a wrong guess the address is blocked (429)
            while not await page.locator("#actions").is_visible():
                await submit.click()
                await asyncio.sleep(0.2)
        await expect(page.locator("#actions")).to_be_visible()
        assert await post_status(page, path, order, {}) == 403, "logged in, no CSRF token"
        assert line.agent.batch_lines.named(None).work_order.work_order is None

        form = page.locator("#work-order-form")
        await form.locator("input[name=work_order]").fill("WO-4711")
        await form.locator("input[name=lot]").fill("L4711")
        await form.locator("input[name=planned_qty]").fill("300")
        await form.locator("button[type=submit]").click()
        await expect(page.locator("#action-message")).to_contain_text("Done")
        batch = page.locator("#lines .batch")
        await expect(batch).to_contain_text("WO-4711")
        await expect(batch).to_contain_text("L4711")
        await expect(batch).to_contain_text("300")
        code = await line.complete_batch(quantity=300)
        assert "(10)L4711" in code
        await expect(page.locator("#lines .batches")).to_contain_text(code)

        await form.locator("input[name=gtin]").fill("12345678901234")
        await form.locator("button[type=submit]").click()
        await expect(page.locator("#action-message")).to_contain_text("Refused")

        if not line.agent.alarms.active():  # the clock alarm is on where NTP is not synced
            line.agent.alarms.raise_("test", "test", "raised by the test")
            line.agent.state.touch()
        alarm = line.agent.alarms.active()[0]
        await page.locator("#alarms button").first.click()
        await expect(page.locator("#alarms")).to_contain_text("acknowledged")
        assert line.agent.alarms.active()[0].acknowledged, alarm.id
        await page.screenshot(path=str(tmp_path / "logged-in.png"), full_page=True)
        assert b.csp_violations() == []
        assert b.page_errors == []
