"""provider=stub: buying credits with no Stripe at all, through the same fulfilment path."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hero_onboarding.billing import fulfil
from hero_onboarding.config import load_settings
from hero_onboarding.mycelium.messages import SandboxOutbox
from hero_onboarding.payments.base import CheckoutRequest, EventKind, ProviderError, ProviderEvent
from hero_onboarding.payments.stub import StubCheckouts
from hero_onboarding.store import Store, ledger
from hero_onboarding.store.ledger import EntryKind, LedgerEntry
from tests.conftest import balance_of, build_app
from tests.login_kit import Browser
from tests.sandbox_kit import FakeClock
from tests.shop_kit import ADDRESS, OTHER_ADDRESS, log_in
from tests.test_payment_flow import stub_buyer


def request(**overrides: object) -> CheckoutRequest:
    values: dict[str, object] = {
        "sid": "sid-1",
        "address": ADDRESS,
        "amount": 1000,
        "currency": "usd",
        "success_url": "http://shop.test/payment/return?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://shop.test/payment/cancel",
        "expires_at": 1_900_003_600,
        "idempotency_key": "key-1",
    }
    values.update(overrides)
    return CheckoutRequest(**values)  # type: ignore[arg-type]


async def test_a_stub_checkout_is_paid_on_our_own_page_and_credited_once(
    tmp_path: Path, store: Store, webhooks, aiohttp_client
) -> None:
    settings = load_settings(
        {"HOME": str(tmp_path)},
        {"data_dir": str(tmp_path / "data"), "provider": "stub", "mode": "sandbox"},
    )
    outbox = SandboxOutbox()
    client = await aiohttp_client(build_app(settings, store, webhooks, messenger=outbox))
    buyer, intruder = Browser(client), Browser(await aiohttp_client(client.server))
    await log_in(buyer, outbox)
    await log_in(intruder, outbox, OTHER_ADDRESS)

    started = await buyer.post("/payment/intent?amount=1500", {})
    assert started.status == 303
    assert started.location is not None
    assert started.location.startswith(f"{settings.public_url}/payment/stub/stub_cs_")
    path = started.location.removeprefix(settings.public_url)
    page = await buyer.get(path)
    assert page.status == 200
    assert "no money moves" in page.html
    assert "15.00 USD" in page.html
    assert (await intruder.get(path)).status == 404
    assert (await intruder.post(path, {})).status == 404

    paid = await buyer.post(path, {})
    assert paid.status == 303
    checkout_id = path.rsplit("/", 1)[-1]
    assert paid.location == (f"{settings.public_url}/payment/return?session_id={checkout_id}")
    shown = await buyer.get(f"/payment/return?session_id={checkout_id}")
    assert "Payment received" in shown.html
    assert "15.00 USD was added" in shown.html
    async with buyer.client.get("/account") as response:
        sid = (await response.json())["sid"]
    assert await balance_of(store, sid) == 1500

    again = await buyer.post(path, {})  # paid already: the page is gone, nothing more credited
    assert again.status == 404
    assert await balance_of(store, sid) == 1500


async def test_the_stub_replays_a_key_and_refuses_it_with_other_parameters() -> None:
    stub = StubCheckouts("http://shop.test", clock=FakeClock())
    first = await stub.create_checkout(request())
    assert await stub.create_checkout(request()) == first
    with pytest.raises(ProviderError, match="idempotency key reused"):
        await stub.create_checkout(request(amount=2000))
    other = await stub.create_checkout(request(idempotency_key="key-2"))
    assert other.id != first.id
    assert first.url == f"http://shop.test/payment/stub/{first.id}"


async def test_the_stub_reports_paid_expired_and_nothing_yet() -> None:
    clock = FakeClock()
    stub = StubCheckouts("http://shop.test", clock=clock)
    paid_one = await stub.create_checkout(request())
    waiting = await stub.create_checkout(request(idempotency_key="key-2"))
    assert await stub.retrieve_checkout(waiting.id) is None

    found = stub.find(paid_one.id)
    assert found is not None
    event = stub.pay(found)
    assert (event.kind, event.amount, event.sid, event.external_ref) == (
        EventKind.PAID, 1000, "sid-1", paid_one.id,
    )  # fmt: skip
    assert await stub.retrieve_checkout(paid_one.id) == event
    assert stub.find(paid_one.id) is None  # cannot be paid twice

    clock.advance(3600)
    expired = await stub.retrieve_checkout(waiting.id)
    assert expired is not None
    assert expired.kind is EventKind.EXPIRED
    assert stub.find(waiting.id) is None
    await stub.create_checkout(request(idempotency_key="key-3"))  # forgets the expired ones
    assert await stub.retrieve_checkout(waiting.id) is None


async def test_a_dispute_of_spent_credits_shows_a_negative_balance_and_why(
    tmp_path: Path, store: Store, webhooks, aiohttp_client
) -> None:
    buyer = await stub_buyer(tmp_path, store, webhooks, aiohttp_client)
    started = await buyer.post("/payment/intent?amount=1000", {})
    assert started.location is not None
    await buyer.post(urlsplit(started.location).path, {})  # paid on the stub's page
    async with buyer.client.get("/account") as response:
        sid = (await response.json())["sid"]
    spent = LedgerEntry(sid, "admin", EntryKind.ADJUSTMENT, "spent", -700, "usd")
    await store.write(partial(ledger.append, entry=spent, now=int(time.time())))
    [purchase] = await store.read(
        partial(ledger.page, sid=sid, kind=EntryKind.PURCHASE, limit=1, offset=0)
    )
    dispute = ProviderEvent(
        provider="stub",
        kind=EventKind.DISPUTED,
        event_id="evt_dispute",
        raw_type="dispute",
        external_ref=purchase.entry.external_ref,
        amount=1000,
        currency="usd",
        reversal_id="dp_1",
        status="needs_response",
    )
    assert (await fulfil(store, dispute)).amount == -1000

    home = (await buyer.get("/")).html
    assert 'data-testid="balance">-7.00 USD<' in home
    assert 'data-testid="owing"' in home
    assert "<td>Payment disputed</td>" in home
    assert "<td>Purchase</td>" in home
