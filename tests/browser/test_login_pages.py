"""Logging in through the pages in headless Chromium, in sandbox mode (codes in the outbox)."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from hero_onboarding.config import load_settings
from tests.conftest import build_app

ADDRESS = "4a1:2b3c:4d5e:6f70:8192:a3b4:c5d6:e7f8"


async def test_a_new_user_logs_in_with_the_sandbox_outbox_and_out_again(
    page: Page, aiohttp_server, tmp_path, store, webhooks
) -> None:
    settings = load_settings(
        {"HOME": str(tmp_path)}, {"data_dir": str(tmp_path / "data"), "mode": "sandbox"}
    )
    server = await aiohttp_server(build_app(settings, store, webhooks))
    base = str(server.make_url("")).rstrip("/")

    await page.goto(base + "/")
    await expect(page.get_by_role("note")).to_have_text("SANDBOX — no real money")
    await page.get_by_label("Mycelium address").fill("not an address")
    await page.get_by_role("button", name="Send me a code").click()
    await expect(page.get_by_role("alert")).to_contain_text("not an IPv6 address")

    await page.get_by_label("Mycelium address").fill(ADDRESS)
    await page.get_by_role("button", name="Send me a code").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Enter the code sent to your node"
    )
    verify_url = page.url

    await page.get_by_role("link", name="Open the sandbox outbox").click()
    message = await page.get_by_test_id("message").first.inner_text()
    found = re.search(r"[0-9A-Z]{5}-[0-9A-Z]{5}", message)
    assert found is not None, message
    code = found.group(0)

    await page.goto(verify_url)
    await page.get_by_label("Login code").fill("WRONG-CODE0")
    await page.get_by_role("button", name="Log in", exact=True).click()
    await expect(page.get_by_role("alert")).to_contain_text("4 tries left")
    await page.get_by_label("Login code").fill(code)
    await page.get_by_role("button", name="Log in", exact=True).click()

    await expect(page.get_by_role("heading", level=1)).to_have_text("Your credits")
    await expect(page.get_by_text(ADDRESS)).to_be_visible()
    await expect(page.get_by_test_id("balance")).to_have_text("0.00 USD")

    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_role("button", name="Send me a code")).to_be_visible()
