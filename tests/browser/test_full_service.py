"""As a new user would: `hero-onboarding --start --sandbox` in a temp home, then Chromium.

Log in through the sandbox outbox page, buy $10 with 4242 4242 4242 4242 on the sandbox's
hosted page, land on the return page and see the balance; then a declined card credits nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.browser.page_kit import fill_card
from tests.control_kit import Install

ADDRESS = "4a1:2b3c:4d5e:6f70:8192:a3b4:c5d6:e7f8"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    install = Install.in_tmp(tmp_path)
    started = install.cli("--start", "--sandbox")
    assert started.returncode == 0, started.stderr
    found = re.search(r"public URL:\s+(\S+)", started.stdout)
    assert found is not None, started.stdout
    yield found.group(1)
    install.stop_all()


async def test_a_new_user_buys_10_dollars_then_a_declined_card_charges_nothing(
    page: Page, service: str
) -> None:
    await page.goto(service)
    await expect(page.get_by_role("note")).to_have_text("SANDBOX — no real money")
    await page.get_by_label("Mycelium address").fill(ADDRESS)
    await page.get_by_role("button", name="Send me a code").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Enter the code sent to your node"
    )
    verify_url = page.url
    await page.get_by_role("link", name="Open the sandbox outbox").click()
    message = await page.get_by_test_id("message").first.inner_text()
    code = re.search(r"[0-9A-Z]{5}-[0-9A-Z]{5}", message)
    assert code is not None, message
    await page.goto(verify_url)
    await page.get_by_label("Login code").fill(code.group(0))
    await page.get_by_role("button", name="Log in", exact=True).click()
    await expect(page.get_by_test_id("balance")).to_have_text("0.00 USD")

    await page.get_by_role("button", name="Buy 10.00 USD").click()
    await expect(page.get_by_test_id("amount")).to_have_text("10.00 USD")
    await fill_card(page, "4242 4242 4242 4242")
    await page.get_by_role("button", name="Pay 10.00 USD").click()
    await expect(page).to_have_url(re.compile(r"/payment/return\?session_id=cs_test_"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Payment received")
    await expect(page.get_by_test_id("balance")).to_have_text("10.00 USD")

    await page.get_by_role("link", name="Back to your credits").click()
    await page.get_by_role("button", name="Buy 10.00 USD").click()
    await fill_card(page, "4000 0000 0000 0002")
    await page.get_by_role("button", name="Pay 10.00 USD").click()
    await expect(page.get_by_role("alert")).to_have_text("Your card was declined.")
    await page.get_by_role("link", name="Back, do not pay").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Payment cancelled")
    await expect(page.get_by_text("Your balance is still 10.00 USD.")).to_be_visible()
