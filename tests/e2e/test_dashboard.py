"""The ops dashboard in a real browser (Debian's Chromium, headless, driven by Playwright): the page
loads, shows a backorder the test just created, and updates live when a receipt serves it."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import date, timedelta

import pytest
from e2e.kit import new_customer, new_sku, place_order, purchase_order, receive, set_policy
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from shared.devstack.stack import DASHBOARD


def chromium_path() -> str:
    """`make test` installs Debian's chromium when it is missing (see the Makefile's browser target)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "the dashboard test needs Chromium: run `make browser` (Debian: apt-get install chromium)"
    return path


def feed_line(page: Page, event_type: str, text: str) -> Locator:
    """A line of the live event feed."""
    return page.locator(f'#feed div[data-type="{event_type}"]', has_text=text)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def test_the_dashboard_shows_a_new_backorder_and_its_fill_live(stack, browser: Browser, orders_api, inventory_api) -> None:
    page: Page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{stack.base_url(DASHBOARD)}/")
    await expect(page.locator("#live")).to_have_text("live", timeout=15_000)  # the event feed is positioned

    sku = new_sku("DASH")
    await set_policy(inventory_api, sku, supplier="ACME")
    po_id = await purchase_order(inventory_api, sku, 3, date.today() + timedelta(days=7))
    order_id = await place_order(orders_api, new_customer(), [(sku, 3)])

    row = page.locator(f'tr[data-sku="{sku}"]')
    await expect(row.locator(".units")).to_have_text("3", timeout=15_000)
    await expect(row).to_contain_text(po_id)
    await expect(feed_line(page, "BackorderBooked", order_id)).to_have_count(1, timeout=15_000)

    receipt_id = await receive(inventory_api, sku, 3, po_id)

    await expect(feed_line(page, "GoodsReceived", receipt_id)).to_have_count(1, timeout=15_000)
    await expect(feed_line(page, "BackorderAllocated", order_id)).to_have_count(1, timeout=15_000)
    await expect(row).to_have_count(0, timeout=15_000)  # nothing waits for the SKU any more
    await expect(page.locator(".unreachable")).to_have_count(0)  # every source of the page answered
    assert errors == []
