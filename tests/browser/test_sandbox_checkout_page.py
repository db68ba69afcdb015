"""The sandbox's hosted payment page in a real headless Chromium, as a buyer uses it."""

from __future__ import annotations

import re

from aiohttp import web
from playwright.async_api import Page, expect

from tests.browser.page_kit import fill_card
from tests.sandbox_kit import Harness, Receiver, wait_for_types


async def merchant_site(aiohttp_server) -> str:
    """Where success_url points: a page that shows which session it was sent back with."""

    async def returned(request: web.Request) -> web.Response:
        session_id = request.query.get("session_id", "")
        return web.Response(text=f"<p id=returned>{session_id}</p>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/payment/return", returned)
    server = await aiohttp_server(app)
    return str(server.make_url("/payment/return"))


async def test_a_buyer_pays_with_4242_and_returns_to_the_merchant(
    page: Page, sandbox: Harness, receiver: Receiver, aiohttp_server
) -> None:
    return_url = await merchant_site(aiohttp_server)
    session = await sandbox.new_session(
        success_url=f"{return_url}?session_id={{CHECKOUT_SESSION_ID}}"
    )
    assert session.url is not None

    await page.goto(session.url)
    await expect(page.get_by_test_id("amount")).to_have_text("10.00 USD")
    await expect(page.get_by_role("note")).to_contain_text("SANDBOX")
    await fill_card(page, "4242 4242 4242 4242")
    await page.get_by_role("button", name="Pay 10.00 USD").click()

    await expect(page).to_have_url(re.compile(re.escape(return_url)))
    await expect(page.locator("#returned")).to_have_text(session.id)
    await wait_for_types(receiver, "checkout.session.completed")
    assert sandbox.engine.state.sessions[session.id]["payment_status"] == "paid"


async def test_a_declined_card_shows_the_error_and_the_buyer_can_retry(
    page: Page, sandbox: Harness, receiver: Receiver
) -> None:
    session = await sandbox.new_session()
    assert session.url is not None
    await page.goto(session.url)
    await fill_card(page, "4000 0000 0000 0002")
    await page.get_by_role("button", name="Pay 10.00 USD").click()

    await expect(page.get_by_role("alert")).to_have_text("Your card was declined.")
    await expect(page.get_by_label("Card number")).to_have_attribute("aria-invalid", "true")
    await expect(page.get_by_label("CVC")).to_have_value("")
    assert sandbox.engine.state.sessions[session.id]["status"] == "open"
    assert receiver.received == []
