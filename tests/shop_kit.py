"""The public daemon and the Stripe sandbox as real servers, with the official SDK between them.

The sandbox's webhooks reach the daemon through a relay whose gate a test can close, to have the
buyer come back before the webhook does. Buyers log in through the sandbox outbox.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from hero_onboarding.config import Settings, load_settings
from hero_onboarding.mycelium.messages import SandboxOutbox
from hero_onboarding.payments.stripe_provider import StripeCheckouts
from hero_onboarding.primitives import Secret
from hero_onboarding.store import Store, checkouts, deliveries
from hero_onboarding.store.checkouts import CheckoutSession
from tests.login_kit import Browser
from tests.sandbox_kit import API_KEY, FakeClock, Harness
from tests.waiting import wait_until_async

ADDRESS = "4a1:2b3c:4d5e:6f70:8192:a3b4:c5d6:e7f8"
OTHER_ADDRESS = "5b2:1111:2222:3333:4444:5555:6666:7777"
CODE = re.compile(r"login code is ([0-9A-Z]{5}-[0-9A-Z]{5})")
DECLINED_CARD = "4000 0000 0000 0002"


@dataclass
class Relay:
    """Forwards the sandbox's webhook deliveries to the daemon, unless its gate is closed."""

    target: str = ""
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    http: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        self.gate.set()

    async def handle(self, request: web.Request) -> web.Response:
        await self.gate.wait()
        assert self.http is not None
        try:
            async with self.http.post(
                self.target,
                data=await request.read(),
                headers={
                    "Stripe-Signature": request.headers.get("Stripe-Signature", ""),
                    "Content-Type": "application/json",
                },
            ) as answer:
                return web.Response(status=answer.status, body=await answer.read())
        except aiohttp.ClientError:  # the daemon is gone (the test is over): Stripe retries
            return web.Response(status=502)


def shop_settings(tmp_path: Path, port: int, sandbox_url: str, **flags: str) -> Settings:
    return load_settings(
        {"HOME": str(tmp_path)},
        {
            "data_dir": str(tmp_path / "data"),
            "port": str(port),
            "mode": "sandbox",
            "stripe_api_base": sandbox_url,
            **flags,
        },
    )


def stripe_checkouts(sandbox_url: str, key: str = API_KEY) -> StripeCheckouts:
    return StripeCheckouts(Secret(key), api_base=sandbox_url, timeout_s=10)


@dataclass
class Shop:
    """A running daemon + sandbox, and helpers to act as a buyer of it."""

    settings: Settings
    store: Store
    sandbox: Harness
    relay: Relay
    outbox: SandboxOutbox
    new_browser: Any  # async () -> Browser, each with its own cookie jar
    clock: FakeClock  # the daemon's; the sandbox keeps real time

    async def log_in(self, address: str = ADDRESS) -> Browser:
        browser = await self.new_browser()
        await log_in(browser, self.outbox, address)
        return browser

    async def start_checkout(self, browser: Browser, amount: int = 1000) -> str:
        """POST /payment/intent as the dashboard's button does; the hosted page's URL."""
        await browser.get("/")
        answer = await browser.post(f"/payment/intent?amount={amount}", {})
        assert answer.status == 303, answer.html
        assert answer.location is not None
        assert answer.location.startswith(self.sandbox.url + "/"), answer.location
        return answer.location

    async def pay(self, browser: Browser, amount: int = 1000) -> tuple[str, str]:
        """Buy `amount` with the paying card; the checkout id and the return page's path."""
        page = await self.start_checkout(browser, amount)
        paid = await self.sandbox.pay(page)
        assert paid.status == 303, paid.html
        assert paid.location is not None
        back = urlsplit(paid.location)
        assert f"{back.scheme}://{back.netloc}" == self.settings.public_url
        assert back.path == "/payment/return"
        return back.query.removeprefix("session_id="), f"{back.path}?{back.query}"

    async def checkout(self, checkout_id: str) -> CheckoutSession | None:
        return await self.store.read(partial(checkouts.get, checkout_id=checkout_id))

    async def outcomes(self) -> list[str]:
        """Outcomes of the verified deliveries the daemon acted on, oldest first (the sandbox
        also sends payment_intent.* and charge.succeeded, which we ignore)."""
        recorded = await self.store.read(partial(deliveries.page, limit=100, offset=0))
        return [d.outcome for d in reversed(recorded) if d.verified and d.outcome != "ignored"]

    async def wait_for_outcomes(self, *expected: str) -> None:
        async def arrived() -> bool:
            return await self.outcomes() == list(expected)

        try:
            await wait_until_async(arrived, timeout=10, what=f"webhook outcomes {expected}")
        except AssertionError as exc:
            sent = [
                (d.get("type", d.get("event")), d["status"], d.get("attempts"))
                for d in await self.sandbox.deliveries()
            ]
            raise AssertionError(f"{exc}; recorded {await self.outcomes()}; sent {sent}") from None


async def log_in(browser: Browser, outbox: SandboxOutbox, address: str = ADDRESS) -> None:
    """Log in with the code the app sent to `outbox`, as a person reading it would."""
    await browser.get("/")
    asked = await browser.ask_for_code(address)
    assert asked.status == 303, asked.html
    [message] = outbox.messages(address)[:1]
    code = CODE.search(message.text)
    assert code is not None, message.text
    done = await browser.answer(asked.challenge_id, code=code.group(1))
    assert (done.status, done.location) == (303, "/"), done.html
    await browser.get("/")  # the dashboard, and the token its forms carry now


async def metrics_of(browser: Browser) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics, parsed: (sample name, sorted labels) -> value."""
    async with browser.client.get("/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
