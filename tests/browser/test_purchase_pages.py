"""Buying credits through the pages in headless Chromium, on a phone-sized screen.

The daemon sells through the Stripe sandbox (tests/shop_kit.py); the buyer logs in with the
sandbox outbox, pays on the hosted page and comes back to the return page.
"""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.browser.page_kit import fill_card
from tests.shop_kit import ADDRESS, CODE, Shop


async def log_in(page: Page, shop: Shop) -> None:
    await page.goto(shop.settings.public_url + "/")
    await page.get_by_label("Mycelium address").fill(ADDRESS)
    await page.get_by_role("button", name="Send me a code").click()
    code = CODE.search(shop.outbox.messages(ADDRESS)[0].text)
    assert code is not None
    await page.get_by_label("Login code").fill(code.group(1))
    await page.get_by_role("button", name="Log in", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Your credits")


async def fits_the_screen(page: Page) -> bool:
    """Nothing wider than the phone: no sideways scrolling to read a page."""
    return await page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )


async def test_a_buyer_buys_10_dollars_and_sees_the_balance(page: Page, shop: Shop) -> None:
    await log_in(page, shop)
    await expect(page.get_by_role("note")).to_have_text("SANDBOX — no real money")
    await expect(page.get_by_test_id("balance")).to_have_text("0.00 USD")
    await expect(page.get_by_text("No payments yet.")).to_be_visible()
    assert await fits_the_screen(page)

    await page.get_by_role("button", name="Buy 10.00 USD").click()
    await expect(page).to_have_url(re.compile(re.escape(shop.sandbox.url) + "/c/pay/cs_test_"))
    await expect(page.get_by_test_id("amount")).to_have_text("10.00 USD")
    await fill_card(page, "4242 4242 4242 4242")
    await page.get_by_role("button", name="Pay 10.00 USD").click()

    await expect(page).to_have_url(re.compile(r"/payment/return\?session_id=cs_test_"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Payment received")
    await expect(page.get_by_role("status")).to_have_text("10.00 USD was added to your credits.")
    await expect(page.get_by_test_id("balance")).to_have_text("10.00 USD")
    assert await fits_the_screen(page)

    await page.get_by_role("link", name="Back to your credits").click()
    await expect(page.get_by_test_id("balance")).to_have_text("10.00 USD")
    history = page.get_by_role("table")
    await expect(history.get_by_role("row").nth(1)).to_contain_text("Purchase")
    await expect(history.get_by_role("row").nth(1)).to_contain_text("10.00 USD")
    assert await fits_the_screen(page)


async def test_a_declined_card_then_going_back_charges_nothing(page: Page, shop: Shop) -> None:
    await log_in(page, shop)
    await page.get_by_label("Or another amount in USD").fill("12.50")
    await page.get_by_role("button", name="Continue to payment").click()
    await expect(page.get_by_test_id("amount")).to_have_text("12.50 USD")
    await fill_card(page, "4000 0000 0000 0002")
    await page.get_by_role("button", name="Pay 12.50 USD").click()
    await expect(page.get_by_role("alert")).to_have_text("Your card was declined.")

    await page.get_by_role("link", name="Back, do not pay").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Payment cancelled")
    await expect(page.get_by_text("nothing was charged")).to_be_visible()
    await expect(page.get_by_text("Your balance is still 0.00 USD.")).to_be_visible()


async def test_an_amount_out_of_range_is_explained_next_to_the_field(
    page: Page, shop: Shop
) -> None:
    await log_in(page, shop)
    await page.get_by_label("Or another amount in USD").fill("3")
    await page.get_by_role("button", name="Continue to payment").click()
    await expect(page.get_by_role("alert")).to_have_text(
        "3.00 USD cannot be bought here: choose between 5.00 USD and 1,000.00 USD."
    )
    field = page.get_by_label("Or another amount in USD")
    await expect(field).to_have_attribute("aria-invalid", "true")
    await expect(field).to_have_value("3")  # what was typed stays, to be corrected
    await expect(field).to_have_accessible_description(re.compile("cannot be bought here"))
    assert shop.sandbox.engine.state.sessions == {}
