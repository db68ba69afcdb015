"""billing.fulfil: the provider-agnostic path, called twice or concurrently for one payment."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest

from hero_onboarding.billing import Outcome, fulfil
from hero_onboarding.payments.base import EventKind, ProviderEvent
from hero_onboarding.store import checkouts, deliveries, ledger
from hero_onboarding.store.checkouts import CheckoutSession, CheckoutStatus
from hero_onboarding.store.deliveries import Delivery
from tests.conftest import balance_of, open_checkout


@pytest.fixture
async def checkout(store, user) -> CheckoutSession:
    """The checkout `paid_event` pays: opened by us, for `user`, 10.00 usd."""
    return await open_checkout(store, user.sid, "co_1", 1000, provider="stub")


def paid_event(sid: str, *, ref: str = "pi_1", amount: int = 1000, event_id: str = "evt_1"):
    return ProviderEvent(
        provider="stub",
        kind=EventKind.PAID,
        event_id=event_id,
        raw_type="paid",
        checkout_id="co_1",
        external_ref=ref,
        amount=amount,
        currency="usd",
        sid=sid,
    )


async def test_concurrent_fulfilment_of_one_payment_credits_once(store, user, checkout):
    results = await asyncio.gather(*(fulfil(store, paid_event(user.sid)) for _ in range(20)))
    assert sorted(r.outcome for r in results) == [Outcome.CREDITED] + [Outcome.DUPLICATE] * 19
    assert await balance_of(store, user.sid) == 1000


async def test_webhook_and_return_page_differ_in_event_id_but_credit_once(store, user, checkout):
    first = await fulfil(store, paid_event(user.sid, event_id="evt_webhook"))
    second = await fulfil(store, paid_event(user.sid, event_id="return-page"))
    assert (first.outcome, first.amount) == (Outcome.CREDITED, 1000)
    assert (second.outcome, second.amount) == (Outcome.DUPLICATE, 0)
    assert await balance_of(store, user.sid) == 1000


async def test_paid_marks_our_checkout_complete(store, user, checkout):
    await fulfil(store, paid_event(user.sid))
    found = await store.read(lambda c: checkouts.get(c, "co_1"))
    assert found.status is CheckoutStatus.COMPLETE
    assert found.completed_at is not None


async def test_raw_sql_insert_into_the_ledger_moves_the_balance_too(store, user):
    """The trigger keeps the invariant for every writer, not only this code."""
    await store.write(
        lambda c: c.execute(
            "INSERT INTO payment_events (sid, provider, kind, external_ref, amount, currency,"
            " created_at) VALUES (?, 'admin', 'adjustment', 'k1', -250, 'usd', 0)",
            (user.sid,),
        )
    )
    assert await balance_of(store, user.sid) == -250
    assert await store.read(ledger.verify_ledger) == []


async def test_prune_drops_only_deliveries_older_than_the_cutoff(store):
    for received_at in (100, 200, 300):
        await store.write(
            partial(deliveries.record, delivery=Delivery(received_at, "stripe", True, "credited"))
        )
    assert await store.write(partial(deliveries.prune, received_before=250)) == 2
    assert [d.received_at for d in await store.read(deliveries.page)] == [300]


@pytest.mark.parametrize(
    ("kind", "status"),
    [(EventKind.PENDING, CheckoutStatus.PENDING), (EventKind.FAILED, CheckoutStatus.FAILED)],
)
async def test_unknown_checkout_is_reported_not_invented(store, user, kind, status):
    event = ProviderEvent("stub", kind, "evt_x", "x", checkout_id="co_unknown", sid=user.sid)
    result = await fulfil(store, event)
    assert result.outcome.value == status.value
    assert result.detail == "no open checkout of ours changed"
    assert await store.read(lambda c: checkouts.get(c, "co_unknown")) is None
