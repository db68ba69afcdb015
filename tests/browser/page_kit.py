"""What a buyer does on the sandbox's hosted payment page, shared by the browser tests."""

from __future__ import annotations

from playwright.async_api import Page


async def fill_card(page: Page, number: str) -> None:
    """Fill the hosted page's card form as a person would, with `number` as the card."""
    await page.get_by_label("Email").fill("ada@example.com")
    await page.get_by_label("Card number").fill(number)
    await page.get_by_label("Expiry (MM / YY)").fill("12 / 34")
    await page.get_by_label("CVC").fill("123")
    await page.get_by_label("Name on card").fill("Ada Buyer")
