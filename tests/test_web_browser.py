"""The status page in a real Chromium: live updates, escaping, CSP, language, login and actions."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from playwright.async_api import Page, expect
from pydantic import SecretStr
from support import BROWSER_MARKS, chromium_page, csp_violations
from web_fake import REFUSED, FakeView, serving

from agent.alarms import Alarm
from agent.web import Metrics, create_app
from agent.web.audit import AuditLog
from agent.web.view import PrinterStatus, UndecidedLabel

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

PASSWORD = "line3-admin"

pytestmark = BROWSER_MARKS


@dataclass
class Browsing:
    """A page on a real uvicorn serving the app over a fake view, and what the console said."""

    page: Page
    view: FakeView
    url: str
    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def csp_violations(self) -> list[str]:
        return csp_violations(self.console)


@contextlib.asynccontextmanager
async def browsing(
    tmp_path: Path,
    *,
    password: str | None = PASSWORD,
    locale: str = "en-US",
    width: int = 1280,
    height: int = 800,
) -> AsyncIterator[Browsing]:
    view = FakeView.healthy()
    app = create_app(
        view,
        metrics=Metrics(),
        password=SecretStr(password) if password else None,
        audit=AuditLog(tmp_path / "audit.jsonl"),
        version="0.1.0-test",
    )
    async with (
        serving(app) as server,
        chromium_page(server.url, locale=locale, width=width, height=height) as (page, w),
    ):
        yield Browsing(page, view, server.url, w.console, w.page_errors)


async def test_live_scans_are_shown_escaped_without_csp_violations(tmp_path: Path) -> None:
    async with browsing(tmp_path) as b:
        await expect(b.page.locator("#headline-text")).to_have_text("All systems normal")
        await expect(b.page.locator("#headline")).to_have_class("headline ok")
        await expect(b.page.locator("#lines .batch")).to_contain_text("WO-7")

        b.view.add_scan("]d2010950110153000310LOT42")
        await expect(b.page.locator("#scans")).to_contain_text("]d2010950110153000310LOT42")

        script = "<script>window.__xss=1</script>"
        img = '<img src=x onerror="window.__xss=1">'
        b.view.add_scan(script)
        b.view.add_scan(img, reason=f"not GS1: {img}")
        await expect(b.page.locator("#scans")).to_contain_text(script)
        await expect(b.page.locator("#scans .rejected")).to_contain_text(img)
        await expect(b.page.locator("#scans .rejected .reason")).to_contain_text("not GS1:")
        assert await b.page.locator("#scans img, #scans script").count() == 0
        assert await b.page.evaluate("typeof window.__xss") == "undefined"

        await b.page.screenshot(path=str(tmp_path / "status-1280.png"), full_page=True)
        await b.page.set_viewport_size({"width": 375, "height": 800})
        await expect(b.page.locator("#headline-text")).to_be_visible()
        overflow = await b.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, "the page scrolls sideways on a phone"
        await b.page.screenshot(path=str(tmp_path / "status-375.png"), full_page=True)
        assert b.csp_violations() == []
        assert b.page_errors == []


async def test_headline_turns_red_live_when_the_broker_goes_down(tmp_path: Path) -> None:
    async with browsing(tmp_path) as b:
        await expect(b.page.locator("#headline-text")).to_have_text("All systems normal")
        b.view.set_destination(
            "plant-broker", connected=False, backlog=1234, oldest_undelivered_age_s=75.0
        )
        headline = b.page.locator("#headline-text")
        await expect(headline).to_have_text("Broker unreachable — 1,234 events waiting")
        await expect(b.page.locator("#headline")).to_have_class("headline bad")
        b.view.set_destination("plant-broker", connected=True, backlog=0)
        b.view.alarms = [Alarm("disk", "disk", "Disk 95 % full", b.view.started)]
        b.view.touch()
        await expect(headline).to_have_text("Disk 95 % full")
        await expect(b.page.locator("#headline")).to_have_class("headline warn")
        assert b.csp_violations() == []


async def test_language_switch_and_chinese_browser(tmp_path: Path) -> None:
    async with browsing(tmp_path) as b:
        headline = b.page.locator("#headline-text")
        await expect(headline).to_have_text("All systems normal")
        await b.page.locator("button[data-lang=zh]").click()
        await expect(headline).to_have_text("所有系统正常")
        await expect(b.page.locator("html")).to_have_attribute("lang", "zh-CN")
        await b.page.reload()
        await expect(headline).to_have_text("所有系统正常")  # the choice is remembered
        await b.page.locator("button[data-lang=en]").click()
        await expect(headline).to_have_text("All systems normal")
    async with browsing(tmp_path, locale="zh-CN", password=None) as b:
        await expect(b.page.locator("#headline-text")).to_have_text("所有系统正常")
        await expect(b.page.locator("#actions-disabled")).to_be_visible()
        await expect(b.page.locator("#login-form")).to_be_hidden()
        assert b.csp_violations() == []


async def fetch_status(page: Page, path: str, headers: dict[str, str]) -> Any:
    return await page.evaluate(
        """async ([path, headers]) => {
            const r = await fetch(path, {method: "POST", credentials: "same-origin",
              headers: {"Content-Type": "application/json", ...headers},
              body: JSON.stringify({work_order: "WO-EVIL"})});
            return r.status;
        }""",
        [path, headers],
    )


async def test_login_then_set_work_order_and_refusals(tmp_path: Path) -> None:
    async with browsing(tmp_path) as b:
        page = b.page
        path = "/api/actions/work-order"
        assert await fetch_status(page, path, {}) == 401, "no login"

        await page.locator("#login-form input[name=password]").fill("wrong")
        await page.locator("#login-form button[type=submit]").click()
        await expect(page.locator("#action-message")).to_contain_text("wrong password")
        await page.locator("#login-form input[name=password]").fill(PASSWORD)
        submit = page.locator("#login-form button[type=submit]")
        await submit.click()  # right away: the address is blocked, the password not judged
        await expect(page.locator("#action-message")).to_contain_text(
            "too many failed logins; try again in 1 s"
        )
        async with asyncio.timeout(10):  # the block ends by itself (1 s after one failure)
            while not await page.locator("#actions").is_visible():
                await submit.click()
                await asyncio.sleep(0.2)
        await expect(page.locator("#actions")).to_be_visible()
        await expect(page.locator("#login-form")).to_be_hidden()

        assert await fetch_status(page, path, {}) == 403, "logged in but no CSRF token"
        assert b.view.batch is not None
        assert b.view.batch.work_order == "WO-7"

        form = page.locator("#work-order-form")
        await form.locator("input[name=work_order]").fill("WO-42")
        await form.locator("input[name=gtin]").fill("09501101530003")
        await form.locator("input[name=lot]").fill("L2411")
        await form.locator("input[name=planned_qty]").fill("1000")
        await form.locator("button[type=submit]").click()
        await expect(page.locator("#action-message")).to_contain_text("Done")
        await expect(page.locator("#lines .batch")).to_contain_text("WO-42")
        assert b.view.batch.work_order == "WO-42"
        assert b.view.batch.planned_qty == 1000

        await form.locator("input[name=gtin]").fill("123")
        await form.locator("button[type=submit]").click()
        await expect(page.locator("#action-message")).to_contain_text(f"{REFUSED} GTIN '123'")

        b.view.alarms = [Alarm("clock", "clock", "Clock not synchronised", b.view.started)]
        b.view.touch()
        await page.locator("#alarms button").click()
        await expect(page.locator("#alarms")).to_contain_text("acknowledged")
        assert b.view.alarms[0].acknowledged
        assert b.csp_violations() == []
        assert b.page_errors == []


async def test_an_unconfirmed_label_is_listed_and_reprinted_by_an_admin(tmp_path: Path) -> None:
    async with browsing(tmp_path) as b:
        page = b.page
        code = "(01)09501101530003(10)<b>L1</b>(21)000007"
        b.view.printers = [
            PrinterStatus(
                "labeller-1",
                connected=True,
                ready=False,
                reason="paper out",
                queued=2,
                undecided=[UndecidedLabel(1, "batch", code, "no answer")],
            )
        ]
        b.view.touch()
        card = page.locator("#printers-card")
        await expect(card).to_be_visible()
        await expect(card).to_contain_text("paper out")
        await expect(card).to_contain_text(code)  # as text: never markup
        await expect(card).to_contain_text("not confirmed (no answer)")
        await expect(card.locator("button")).to_have_count(0)  # nobody logged in
        await page.locator("#login-form input[name=password]").fill(PASSWORD)
        await page.locator("#login-form button[type=submit]").click()
        await expect(page.locator("#actions")).to_be_visible()
        b.view.touch()
        await card.get_by_role("button", name="Reprint").click()
        await expect(page.locator("#action-message")).to_contain_text("Done: Reprint #1")
        assert b.view.label_decisions == [("labeller-1", 1, "reprint")]
        assert b.csp_violations() == []
        assert b.page_errors == []
