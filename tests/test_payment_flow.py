"""Buying credits end to end: the public daemon and the Stripe sandbox as real servers.

The daemon opens checkouts through the official SDK over HTTP; the buyer pays on the sandbox's
hosted page; the sandbox's signed webhooks come back to the daemon through a gated relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import stripe

from hero_onboarding.config import Settings, load_settings
from hero_onboarding.mycelium.messages import SandboxOutbox
from hero_onboarding.payments.stripe_provider import StripeCheckouts, StripeWebhooks
from hero_onboarding.payments.stub import StubCheckouts
from hero_onboarding.primitives import Secret
from hero_onboarding.store import Store, balances, checkouts, ledger
from hero_onboarding.store.checkouts import CheckoutSession, CheckoutStatus
from tests.conftest import build_app, register
from tests.login_kit import Browser
from tests.processes import free_port
from tests.sandbox_kit import API_KEY
from tests.shop_kit import (
    ADDRESS,
    DECLINED_CARD,
    OTHER_ADDRESS,
    Shop,
    log_in,
    metrics_of,
    stripe_checkouts,
)


async def balance_of(shop: Shop, browser: Browser) -> int:
    async with browser.client.get("/account") as response:
        sid = (await response.json())["sid"]
    found = await shop.store.read(partial(balances.get, sid=sid))
    assert found is not None
    return found.credit_balance


async def checkouts_recorded(store: Store) -> int:
    return await store.read(lambda conn: conn.execute("SELECT COUNT(*) FROM checkout_sessions").get)


async def buyer_of(
    settings: Settings,
    store: Store,
    webhooks: StripeWebhooks | None,
    aiohttp_client,
    checkouts: Any,
) -> Browser:
    """A logged-in buyer of an app selling through `checkouts`."""
    outbox = SandboxOutbox()
    app = build_app(settings, store, webhooks, messenger=outbox, checkouts=checkouts)
    buyer = Browser(await aiohttp_client(app))
    await log_in(buyer, outbox)
    return buyer


async def stub_buyer(
    tmp_path: Path, store: Store, webhooks: StripeWebhooks, aiohttp_client, **flags: str
) -> Browser:
    """A logged-in buyer of an app selling through the stub provider, with these settings."""
    settings = load_settings(
        {"HOME": str(tmp_path)}, {"data_dir": str(tmp_path / "data"), "mode": "sandbox", **flags}
    )
    stub = StubCheckouts(settings.public_url)
    return await buyer_of(settings, store, webhooks, aiohttp_client, stub)


async def dashboard_nonce(buyer: Browser) -> str:
    """The checkout nonce the dashboard's buy forms carry right now."""
    found = re.search(r'name="checkout_nonce" value="([^"]+)"', (await buyer.get("/")).html)
    assert found is not None
    return found.group(1)


def shown_balance(html: str) -> str:
    found = re.search(r'data-testid="balance">([^<]+)<', html)
    assert found is not None, html[:500]
    return found.group(1)


# --- the round trip ---


async def test_paying_credits_exactly_the_amount_once(shop: Shop) -> None:
    buyer = await shop.log_in()
    assert shown_balance((await buyer.get("/")).html) == "0.00 USD"

    checkout_id, back = await shop.pay(buyer, 1000)
    await shop.wait_for_outcomes("credited")
    assert await balance_of(shop, buyer) == 1000

    page = await buyer.get(back)  # where the sandbox sent the buyer
    assert page.status == 200
    assert "Payment received" in page.html
    assert "10.00 USD was added" in page.html
    assert shown_balance(page.html) == "10.00 USD"
    checkout = await shop.checkout(checkout_id)
    assert checkout is not None
    assert checkout.status is CheckoutStatus.COMPLETE

    # Stripe sends the same event again: nothing moves.
    completed = shop.sandbox.event_id("checkout.session.completed")
    await shop.sandbox.control(f"/_sandbox/events/{completed}/resend")
    await shop.wait_for_outcomes("credited", "duplicate")
    assert await balance_of(shop, buyer) == 1000
    home = await buyer.get("/")
    assert shown_balance(home.html) == "10.00 USD"
    assert "Purchase" in home.html
    assert "10.00 USD" in home.html


async def test_the_return_page_credits_before_the_webhook_and_the_webhook_is_a_no_op(
    shop: Shop,
) -> None:
    buyer = await shop.log_in()
    shop.relay.gate.clear()  # the webhook is held up somewhere on the internet
    checkout_id, path = await shop.pay(buyer, 2500)
    back = await buyer.get(path)
    assert "Payment received" in back.html
    assert shown_balance(back.html) == "25.00 USD"
    assert await balance_of(shop, buyer) == 2500
    entries = await shop.store.read(partial(ledger.page, limit=10, offset=0))
    assert [e.entry.event_id for e in entries] == [f"retrieve:{checkout_id}"]

    shop.relay.gate.set()
    await shop.wait_for_outcomes("duplicate")
    assert await balance_of(shop, buyer) == 2500


async def test_a_buyer_pays_twice_and_is_credited_twice(shop: Shop) -> None:
    buyer = await shop.log_in()
    await shop.pay(buyer, 500)
    await shop.pay(buyer, 700)
    await shop.wait_for_outcomes("credited", "credited")
    assert await balance_of(shop, buyer) == 1200


# --- what does not credit ---


async def test_a_declined_card_credits_nothing_and_the_pages_say_so(shop: Shop) -> None:
    buyer = await shop.log_in()
    page = await shop.start_checkout(buyer, 1000)
    declined = await shop.sandbox.pay(page, card_number=DECLINED_CARD)
    assert declined.status == 402
    assert "Your card was declined" in declined.html

    cancelled = await buyer.get("/payment/cancel")
    assert cancelled.status == 200
    assert "nothing was charged" in cancelled.html
    assert "Your balance is still 0.00 USD" in cancelled.html

    checkout_id = page.rsplit("/", 1)[-1].split("#")[0]
    waiting = await buyer.get(f"/payment/return?session_id={checkout_id}")
    assert waiting.status == 200
    assert "We have not heard about your payment" in waiting.html
    assert '<meta http-equiv="refresh"' in waiting.html
    assert shown_balance(waiting.html) == "0.00 USD"
    assert await shop.sandbox.deliveries() == []  # a declined card emits no event
    assert await balance_of(shop, buyer) == 0


async def test_an_expired_session_is_marked_expired(shop: Shop) -> None:
    buyer = await shop.log_in()
    page = await shop.start_checkout(buyer, 1000)
    checkout_id = page.rsplit("/", 1)[-1].split("#")[0]

    await shop.sandbox.control(f"/_sandbox/checkout/sessions/{checkout_id}/expire")
    await shop.wait_for_outcomes("expired")
    checkout = await shop.checkout(checkout_id)
    assert checkout is not None
    assert checkout.status is CheckoutStatus.EXPIRED

    shown = await buyer.get(f"/payment/return?session_id={checkout_id}")
    assert "Payment expired" in shown.html
    assert "refresh" not in shown.html
    assert await balance_of(shop, buyer) == 0


async def test_the_return_page_learns_of_an_expiry_the_webhook_has_not_brought(
    shop: Shop,
) -> None:
    buyer = await shop.log_in()
    shop.relay.gate.clear()
    page = await shop.start_checkout(buyer, 1000)
    checkout_id = page.rsplit("/", 1)[-1].split("#")[0]
    await shop.sandbox.control(f"/_sandbox/checkout/sessions/{checkout_id}/expire")

    shown = await buyer.get(f"/payment/return?session_id={checkout_id}")
    assert "Payment expired" in shown.html
    checkout = await shop.checkout(checkout_id)
    assert checkout is not None
    assert checkout.status is CheckoutStatus.EXPIRED


async def test_a_bank_payment_shows_as_processing_until_it_settles(shop: Shop) -> None:
    buyer = await shop.log_in()
    page = await shop.start_checkout(buyer, 3000)
    checkout_id = page.rsplit("/", 1)[-1].split("#")[0]
    done = await shop.sandbox.pay_by_bank(page)
    assert done.status == 303
    await shop.wait_for_outcomes("pending")

    shown = await buyer.get(f"/payment/return?session_id={checkout_id}")
    assert "Your bank payment of 30.00 USD is on its way" in shown.html
    assert "refresh" not in shown.html  # banks take days: no page reloading itself that long
    home = await buyer.get("/")
    assert "Payments in progress" in home.html
    assert checkout_id in home.html

    await shop.sandbox.control(
        f"/_sandbox/checkout/sessions/{checkout_id}/settle", {"outcome": "succeeded"}
    )
    await shop.wait_for_outcomes("pending", "credited")
    assert await balance_of(shop, buyer) == 3000
    assert "Payments in progress" not in (await buyer.get("/")).html


async def test_a_failed_bank_payment_is_read_back_as_failed(shop: Shop) -> None:
    buyer = await shop.log_in()
    shop.relay.gate.clear()
    page = await shop.start_checkout(buyer, 3000)
    checkout_id = page.rsplit("/", 1)[-1].split("#")[0]
    await shop.sandbox.pay_by_bank(page)
    await shop.sandbox.control(
        f"/_sandbox/checkout/sessions/{checkout_id}/settle", {"outcome": "failed"}
    )
    shown = await buyer.get(f"/payment/return?session_id={checkout_id}")
    assert "Payment failed" in shown.html
    checkout = await shop.checkout(checkout_id)
    assert checkout is not None
    assert checkout.status is CheckoutStatus.FAILED
    assert await balance_of(shop, buyer) == 0


# --- what the checkout asks Stripe for ---


async def test_the_checkout_carries_who_pays_and_where_to_come_back(shop: Shop) -> None:
    buyer = await shop.log_in()
    page = await shop.start_checkout(buyer, 1234)
    checkout_id = page.rsplit("/", 1)[-1].split("#")[0]
    async with buyer.client.get("/account") as response:
        account = await response.json()

    session = await shop.sandbox.sdk.v1.checkout.sessions.retrieve_async(
        checkout_id, {"expand": ["payment_intent", "line_items"]}
    )
    assert session.mode == "payment"
    assert session.amount_total == 1234
    assert session.currency == "usd"
    assert session.client_reference_id == account["sid"]
    expected = {"sid": account["sid"], "address": account["mycelium_address"]}
    assert session.metadata is not None
    assert session.metadata.to_dict() == expected
    assert session.adaptive_pricing is not None
    assert session.adaptive_pricing.enabled is False
    assert session.line_items is not None
    assert session.line_items.data[0].description == "Hero credits"
    public = shop.settings.public_url
    assert session.success_url == f"{public}/payment/return?session_id={{CHECKOUT_SESSION_ID}}"
    assert session.cancel_url == f"{public}/payment/cancel"
    row = await shop.checkout(checkout_id)
    assert row is not None
    assert (row.amount, row.currency, row.status) == (1234, "usd", CheckoutStatus.OPEN)
    assert row.expires_at == session.expires_at

    await shop.sandbox.pay(page)
    paid = await shop.sandbox.sdk.v1.checkout.sessions.retrieve_async(
        checkout_id, {"expand": ["payment_intent"]}
    )
    assert isinstance(paid.payment_intent, stripe.PaymentIntent)
    assert paid.payment_intent.metadata.to_dict() == expected


async def test_a_form_sent_twice_opens_one_checkout(shop: Shop) -> None:
    buyer = await shop.log_in()
    form = {"amount": "1000", "checkout_nonce": await dashboard_nonce(buyer)}
    first = await buyer.post("/payment/intent", form)
    shop.clock.advance(2)  # the second click comes a moment later: still the same checkout
    again = await buyer.post("/payment/intent", form)
    assert first.status == again.status == 303
    assert first.location == again.location
    assert len(shop.sandbox.engine.state.sessions) == 1

    other = await buyer.post("/payment/intent", {**form, "amount": "2000"})
    assert other.status == 303
    assert other.location != first.location


async def test_a_stale_form_for_a_paid_checkout_goes_to_its_receipt(shop: Shop) -> None:
    buyer = await shop.log_in()
    form = {"amount": "1000", "checkout_nonce": await dashboard_nonce(buyer)}
    first = await buyer.post("/payment/intent", form)
    assert first.location is not None
    await shop.sandbox.pay(first.location)
    await shop.wait_for_outcomes("credited")

    shop.clock.advance(60)
    again = await buyer.post("/payment/intent", form)  # the back button, then submit
    checkout_id = first.location.rsplit("/", 1)[-1].split("#")[0]
    assert (again.status, again.location) == (303, f"/payment/return?session_id={checkout_id}")


async def test_a_custom_amount_is_read_in_whole_units(shop: Shop) -> None:
    buyer = await shop.log_in()
    await buyer.get("/")
    answer = await buyer.post("/payment/intent", {"custom_amount": "12.50"})
    assert answer.status == 303
    [session] = shop.sandbox.engine.state.sessions.values()
    assert session["amount_total"] == 1250


# --- bad requests ---


@pytest.mark.parametrize(
    ("query", "form", "says"),
    [
        ("amount=0", {}, "0.00 USD cannot be bought here"),
        ("amount=-500", {}, "must be a whole number of minor units"),
        ("amount=12.5", {}, "must be a whole number of minor units"),
        ("amount=abc", {}, "must be a whole number of minor units"),
        ("amount=100001", {}, "1,000.01 USD cannot be bought here"),
        ("amount=499", {}, "4.99 USD cannot be bought here"),
        ("amount=99999999999999999999", {}, "is far too large"),
        ("", {}, "Choose an amount"),
        ("amount=", {}, "Choose an amount"),
        ("", {"custom_amount": "12.505"}, "may have at most 2 decimals in USD"),
        ("", {"custom_amount": "ten"}, "must be a number such as 12.50"),
        ("", {"custom_amount": "2000"}, "2,000.00 USD cannot be bought here"),
        ("", {"custom_amount": "<b>5</b>"}, 'value="&lt;b&gt;5&lt;/b&gt;"'),
    ],
)
async def test_an_amount_out_of_range_or_malformed_is_400_and_opens_nothing(
    shop: Shop, query: str, form: dict[str, str], says: str
) -> None:
    buyer = await shop.log_in()
    await buyer.get("/")
    answer = await buyer.post(f"/payment/intent?{query}", form)
    assert answer.status == 400
    assert says in answer.html
    assert "between 5.00 USD and 1,000.00 USD" in answer.html
    assert 'role="alert"' in answer.html
    assert shop.sandbox.engine.state.sessions == {}
    assert await checkouts_recorded(shop.store) == 0


async def test_without_a_session_the_buyer_is_sent_to_log_in(shop: Shop) -> None:
    stranger = await shop.new_browser()
    await stranger.get("/")  # a CSRF token, but no login
    answer = await stranger.post("/payment/intent?amount=1000", {})
    assert (answer.status, answer.location) == (303, "/")
    shown = await stranger.get("/payment/return?session_id=cs_test_x")
    assert (shown.status, shown.location) == (303, "/")
    cancelled = await stranger.get("/payment/cancel")
    assert (cancelled.status, cancelled.location) == (303, "/")
    assert shop.sandbox.engine.state.sessions == {}


async def test_without_the_csrf_token_it_is_403(shop: Shop) -> None:
    buyer = await shop.log_in()
    answer = await buyer.post("/payment/intent?amount=1000", {}, csrf=False)
    assert answer.status == 403
    forged = await buyer.post("/payment/intent?amount=1000", {"csrf_token": "forged"}, csrf=False)
    assert forged.status == 403
    assert shop.sandbox.engine.state.sessions == {}


async def test_someone_elses_checkout_is_404_and_stays_unpaid_by_them(shop: Shop) -> None:
    owner = await shop.log_in()
    shop.relay.gate.clear()
    checkout_id, _ = await shop.pay(owner, 1000)
    intruder = await shop.log_in(OTHER_ADDRESS)
    for reference in (checkout_id, "cs_test_made_up", ""):
        shown = await intruder.get(f"/payment/return?session_id={reference}")
        assert shown.status == 404
        assert "No such payment" in shown.html
    home = await intruder.get("/")
    assert shown_balance(home.html) == "0.00 USD"
    assert "No payments yet" in home.html
    assert await balance_of(shop, intruder) == 0


# --- the provider failing ---


async def test_stripe_unreachable_is_a_502_page_and_nothing_is_recorded(
    tmp_path: Path, settings, store, webhooks, aiohttp_client
) -> None:
    dead = stripe_checkouts(f"http://127.0.0.1:{free_port()}")
    try:
        buyer = await buyer_of(settings, store, webhooks, aiohttp_client, dead)
        answer = await buyer.post("/payment/intent?amount=1000", {})
        assert answer.status == 502
        assert "nothing was charged" in answer.html
        assert await checkouts_recorded(store) == 0
        figures = await metrics_of(buyer)
        assert figures[("hero_onboarding_checkout_failures_total", (("provider", "stripe"),))] == 1
    finally:
        await dead.close()


async def test_a_refused_api_key_never_reaches_the_page(shop: Shop, aiohttp_client) -> None:
    wrong_key = "pk_test_" + "Z" * 24  # a publishable key: Stripe answers 401, quoting it
    refused = stripe_checkouts(shop.sandbox.url, key=wrong_key)
    try:
        buyer = await buyer_of(shop.settings, shop.store, None, aiohttp_client, refused)
        answer = await buyer.post("/payment/intent?amount=1000", {})
        assert answer.status == 502
        assert wrong_key not in answer.html
        assert "ZZZZ" not in answer.html
    finally:
        await refused.close()


# --- metrics ---


async def test_metrics_count_what_happened(shop: Shop) -> None:
    buyer = await shop.log_in()
    await shop.pay(buyer, 1000)
    await shop.wait_for_outcomes("credited")
    completed = shop.sandbox.event_id("checkout.session.completed")
    await shop.sandbox.control(f"/_sandbox/events/{completed}/resend")
    await shop.wait_for_outcomes("credited", "duplicate")
    async with buyer.client.post(
        "/webhooks/stripe", data=b"{}", headers={"Stripe-Signature": "t=1,v1=00"}
    ) as response:
        assert response.status == 401

    figures = await metrics_of(buyer)
    prefix = "hero_onboarding_"

    def value(name: str, **labels: str) -> float:
        return figures.get((prefix + name, tuple(sorted(labels.items()))), 0.0)

    assert value("checkouts_created_total", provider="stripe") == 1
    assert value("webhooks_total", type="checkout.session.completed", outcome="credited") == 1
    assert value("webhooks_total", type="checkout.session.completed", outcome="duplicate") == 1
    assert value("webhooks_total", type="unverified", outcome="rejected") == 1
    assert value("webhook_signature_failures_total") == 1
    # The return page may have read the session back first; either way one credit, in all.
    credits = value("credits_applied_total", source="webhook", currency="usd") + value(
        "credits_applied_total", source="return", currency="usd"
    )
    assert credits == 1
    assert (
        value("credited_minor_units_total", source="webhook", currency="usd")
        + value("credited_minor_units_total", source="return", currency="usd")
        == 1000
    )
    assert value("duplicates_ignored_total", source="webhook") >= 1
    attempts = sum(len(d["attempts"]) for d in await shop.sandbox.deliveries())
    assert value("webhook_duration_seconds_count") == attempts + 1  # and the forged one
    assert value("http_request_duration_seconds_count", route="/payment/intent", method="POST") == 1
    assert value("provider_request_duration_seconds_count", operation="create", result="ok") == 1


async def test_metrics_are_not_served_outside_the_allowed_networks(
    tmp_path: Path, store, webhooks, aiohttp_client
) -> None:
    settings = load_settings(
        {"HOME": str(tmp_path)},
        {"data_dir": str(tmp_path / "data"), "metrics_networks": "10.0.0.0/8"},
    )
    client = await aiohttp_client(build_app(settings, store, webhooks))
    async with client.get("/metrics") as response:
        assert response.status == 403
        assert "hero_onboarding" not in await response.text()


# --- forms sent again, limits, and a provider that fails in the middle ---


async def test_a_form_too_old_to_reuse_opens_a_fresh_checkout(shop: Shop) -> None:
    buyer = await shop.log_in()
    now = int(shop.clock())
    reuse_s = shop.settings.checkout_ttl_s - 1800 - 300
    stale = {"amount": "1000", "checkout_nonce": f"{now - reuse_s - 5}.{'s' * 24}"}
    first = await buyer.post("/payment/intent", stale)
    again = await buyer.post("/payment/intent", stale)
    assert first.status == again.status == 303
    assert first.location != again.location  # each a new checkout, neither refused by Stripe
    future = {"amount": "1000", "checkout_nonce": f"{now + 3600}.{'f' * 24}"}
    assert (await buyer.post("/payment/intent", future)).status == 303
    sessions = shop.sandbox.engine.state.sessions.values()
    assert len(sessions) == 3
    assert all(s["expires_at"] >= now + shop.settings.checkout_ttl_s for s in sessions)


async def test_reloading_the_return_page_asks_stripe_once_per_interval(shop: Shop) -> None:
    buyer = await shop.log_in()
    page = await shop.start_checkout(buyer, 1000)
    checkout_id = page.rsplit("/", 1)[-1].split("#")[0]
    for _ in range(5):
        shown = await buyer.get(f"/payment/return?session_id={checkout_id}")
        assert shown.status == 200
    figures = await metrics_of(buyer)
    asked = figures[
        (
            "hero_onboarding_provider_request_duration_seconds_count",
            (("operation", "retrieve"), ("result", "ok")),
        )
    ]
    assert asked == 1


async def test_checkouts_per_user_are_limited_even_when_sent_at_once(
    tmp_path: Path, store: Store, webhooks, aiohttp_client
) -> None:
    buyer = await stub_buyer(tmp_path, store, webhooks, aiohttp_client, checkout_max_per_hour="3")
    answers = await asyncio.gather(
        *(buyer.post("/payment/intent?amount=1000", {}) for _ in range(8))
    )
    assert sorted(a.status for a in answers) == [303] * 3 + [429] * 5
    refused = next(a for a in answers if a.status == 429)
    assert 3500 <= int(refused.headers["Retry-After"]) <= 3600
    assert "Too many payments started" in refused.html
    assert await checkouts_recorded(store) == 3


async def test_a_balance_in_another_currency_cannot_buy(
    tmp_path: Path, store: Store, webhooks, aiohttp_client
) -> None:
    await register(store, ADDRESS, currency="usd")  # joined while the service sold dollars
    buyer = await stub_buyer(tmp_path, store, webhooks, aiohttp_client, currency="eur")
    home = await buyer.get("/")
    assert "no longer sells" in home.html
    assert 'action="/payment/intent"' not in home.html
    answer = await buyer.post("/payment/intent?amount=1000", {})
    assert answer.status == 409
    assert "nothing was charged" in answer.html
    assert await checkouts_recorded(store) == 0


@pytest.mark.parametrize("failure", ["stall", "cut"])
async def test_stripe_failing_mid_answer_is_a_502_to_the_buyer_and_processing_on_return(
    tmp_path: Path, settings, store: Store, webhooks, aiohttp_client, failure: str
) -> None:
    async with broken_api(failure) as url:
        provider = StripeCheckouts(Secret(API_KEY), api_base=url, timeout_s=1)
        try:
            buyer = await buyer_of(settings, store, webhooks, aiohttp_client, provider)
            answer = await buyer.post("/payment/intent?amount=1000", {})
            assert answer.status == 502
            assert "nothing was charged" in answer.html

            async with buyer.client.get("/account") as response:
                sid = (await response.json())["sid"]
            await store.write(partial(checkouts.insert, checkout=CheckoutSession(
                id="cs_test_open", sid=sid, provider="stripe", amount=1000, currency="usd",
                status=CheckoutStatus.OPEN, url=None, created_at=int(time.time()),
            )))  # fmt: skip
            shown = await buyer.get("/payment/return?session_id=cs_test_open")
            assert shown.status == 200
            assert "We have not heard about your payment" in shown.html
        finally:
            await provider.close()


@contextlib.asynccontextmanager
async def broken_api(failure: str) -> AsyncIterator[str]:
    """An "API" that answers headers, then stalls or hangs up halfway through the body."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"id\": ")  # fmt: skip
            await writer.drain()
            if failure == "stall":
                await reader.read()  # until the client gives up
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def test_metrics_refuse_a_proxied_request_and_bucket_odd_methods(client) -> None:
    async with client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}) as response:
        assert response.status == 403
    async with client.request("PATCH", "/") as response:
        assert response.status == 405
    async with client.get("/metrics") as response:
        text = await response.text()
    assert 'method="other"' in text
    assert "PATCH" not in text
