"""The whole lifecycle of a card payment, from Stripe-shaped events to the ledger.

Each event is built from Stripe's own example objects (tests/fixtures/stripe_*.json), read by
the same normaliser the webhook uses, and applied by billing on a real SQLite file. What is
checked is the balance Stripe's state implies: paid minus refunds that succeeded or are
pending, minus what disputes hold (never more than is still credited).
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import pytest

from hero_onboarding.billing import Fulfilment, Outcome, Unmatched, fulfil
from hero_onboarding.payments.base import EventKind
from hero_onboarding.payments.stripe_provider import StripeWebhooks, normalise_event
from hero_onboarding.primitives import Secret
from hero_onboarding.store import Store, ledger, reversals
from hero_onboarding.store.ledger import EntryKind, LedgerEntry
from hero_onboarding.store.users import User
from tests.conftest import SIGNING_SECRET, balance_of, open_checkout, register
from tests.stripe_events import (
    body_of,
    charge,
    charge_refunded,
    checkout_event,
    dispute_event,
    event,
    new_id,
    refund,
    refund_event,
    sign,
)


async def deliver(store: Store, evt: dict[str, Any]) -> Fulfilment:
    return await fulfil(store, normalise_event(evt))


async def ours(store: Store, user: User, amount: int = 1000, **kwargs: Any) -> dict[str, Any]:
    """A completed, paid session of a checkout we opened for `user`."""
    kwargs.setdefault("payment_intent", new_id("pi"))
    evt = checkout_event("checkout.session.completed", sid=user.sid, amount=amount, **kwargs)
    await open_checkout(store, user.sid, evt["data"]["object"]["id"], amount)
    return evt


def pi_of(evt: dict[str, Any]) -> str:
    return evt["data"]["object"]["payment_intent"]


async def entries(store: Store, sid: str) -> list[tuple[str, int]]:
    rows = await store.read(partial(ledger.page, sid=sid, limit=100, offset=0))
    return sorted((row.entry.kind.value, row.entry.amount) for row in rows)


# -- only our own checkouts ------------------------------------------------------------------


@pytest.mark.parametrize("names", ["the user", "nobody"])
async def test_a_paid_session_we_never_opened_is_not_credited(store, user, names):
    """A session made on the account directly, or by a Payment Link with the buyer's own
    ?client_reference_id=, naming one of our users."""
    evt = checkout_event(
        "checkout.session.completed",
        sid=user.sid if names == "the user" else None,
        amount=1000,
        payment_intent=new_id("pi"),
    )
    result = await deliver(store, evt)
    assert (result.outcome, result.reason) == (Outcome.UNMATCHED, Unmatched.NOT_OUR_CHECKOUT)
    assert result.detail == f"checkout {evt['data']['object']['id']} was not opened by us"
    assert await balance_of(store, user.sid) == 0


async def test_references_that_disagree_are_not_credited(store, user):
    other = await register(store, "5b2:1111:2222:3333:4444:5555:6666:7777")
    evt = await ours(store, user)
    evt["data"]["object"]["metadata"] = {"sid": other.sid}
    result = await deliver(store, evt)
    assert (result.outcome, result.reason) == (Outcome.UNMATCHED, Unmatched.REFERENCES_DISAGREE)
    assert other.sid in result.detail
    assert user.sid in result.detail
    assert (await balance_of(store, user.sid), await balance_of(store, other.sid)) == (0, 0)


async def test_metadata_alone_must_name_the_checkouts_user(store, user):
    other = await register(store, "5b2:1111:2222:3333:4444:5555:6666:7777")
    evt = await ours(store, user)
    evt["data"]["object"].update(client_reference_id=None, metadata={"sid": other.sid})
    result = await deliver(store, evt)
    assert (result.outcome, result.reason) == (Outcome.UNMATCHED, Unmatched.OTHER_USER)
    assert (await balance_of(store, user.sid), await balance_of(store, other.sid)) == (0, 0)


async def test_a_session_naming_another_user_credits_nobody(store, user):
    other = await register(store, "5b2:1111:2222:3333:4444:5555:6666:7777")
    evt = await ours(store, user)
    evt["data"]["object"].update(client_reference_id=other.sid, metadata={"sid": other.sid})
    result = await deliver(store, evt)
    assert (result.outcome, result.reason) == (Outcome.UNMATCHED, Unmatched.OTHER_USER)
    assert result.sid is None
    assert (await balance_of(store, user.sid), await balance_of(store, other.sid)) == (0, 0)


async def test_a_session_without_references_is_credited_to_the_checkouts_user(store, user):
    evt = await ours(store, user)
    evt["data"]["object"].update(client_reference_id=None, metadata={})
    result = await deliver(store, evt)
    assert (result.outcome, result.sid, result.amount) == (Outcome.CREDITED, user.sid, 1000)


@pytest.mark.parametrize(("amount", "currency"), [(999, "usd"), (1001, "usd"), (1000, "eur")])
async def test_a_paid_amount_other_than_the_checkouts_is_not_credited(
    store, user, amount, currency
):
    evt = await ours(store, user, 1000)
    evt["data"]["object"].update(amount_total=amount, currency=currency)
    result = await deliver(store, evt)
    assert (result.outcome, result.reason) == (Outcome.UNMATCHED, Unmatched.AMOUNT_DIFFERS)
    assert await balance_of(store, user.sid) == 0


async def test_a_checkout_of_another_provider_is_not_credited(store, user):
    evt = checkout_event(
        "checkout.session.completed", sid=user.sid, amount=1000, payment_intent=new_id("pi")
    )
    await open_checkout(store, user.sid, evt["data"]["object"]["id"], 1000, provider="stub")
    result = await deliver(store, evt)
    assert (result.outcome, result.reason) == (Outcome.UNMATCHED, Unmatched.NOT_OUR_CHECKOUT)


async def test_a_checkout_in_a_currency_the_balance_is_not_kept_in(store):
    euro = await register(store, "5b2:1111:2222:3333:4444:5555:6666:7777", currency="eur")
    evt = await ours(store, euro, 1000)
    result = await deliver(store, evt)
    assert (result.outcome, result.reason) == (Outcome.UNMATCHED, Unmatched.NO_BALANCE)
    assert result.detail == "paid in usd, but the balance is kept in eur"
    assert await balance_of(store, euro.sid) == 0


async def test_one_checkout_is_credited_once_even_under_two_payments(store, user):
    first = await ours(store, user, 1000)
    second = checkout_event(
        "checkout.session.completed",
        sid=user.sid,
        amount=1000,
        payment_intent=new_id("pi"),
        session_id=first["data"]["object"]["id"],
    )
    assert (await deliver(store, first)).outcome is Outcome.CREDITED
    assert (await deliver(store, second)).outcome is Outcome.DUPLICATE
    assert await balance_of(store, user.sid) == 1000


# -- refunds ---------------------------------------------------------------------------------


async def test_a_refund_delivered_before_its_purchase_is_applied_with_it(store, user):
    purchase = await ours(store, user, 1000)
    refunded = charge_refunded(payment_intent=pi_of(purchase), amount=1000, amount_refunded=400)
    first = await deliver(store, refunded)
    assert (first.outcome, first.amount) == (Outcome.PARKED, 0)
    assert (await deliver(store, refunded)).outcome is Outcome.DUPLICATE
    credited = await deliver(store, purchase)
    assert (credited.outcome, credited.amount) == (Outcome.CREDITED, 600)
    assert credited.detail == "4.00 USD of it already refunded or disputed"
    assert await balance_of(store, user.sid) == 600
    assert await entries(store, user.sid) == [("purchase", 1000), ("refund", -400)]
    assert (await deliver(store, refunded)).outcome is Outcome.DUPLICATE


async def test_a_refund_that_fails_gives_the_credits_back_once(store, user):
    purchase = await ours(store, user, 1000)
    pi = pi_of(purchase)
    await deliver(store, purchase)
    created = refund_event("refund.created", payment_intent=pi, amount=400, status="pending")
    refund_id = created["data"]["object"]["id"]
    taken = await deliver(store, created)
    assert (taken.outcome, taken.amount, taken.sid) == (Outcome.REFUNDED, -400, user.sid)

    def failed(event_type: str) -> dict[str, Any]:
        return refund_event(
            event_type, payment_intent=pi, amount=400, status="failed", refund_id=refund_id
        )

    back = await deliver(store, failed("charge.refund.updated"))
    assert (back.outcome, back.amount) == (Outcome.REFUND_REVERSED, 400)
    assert (await deliver(store, failed("refund.failed"))).outcome is Outcome.DUPLICATE
    assert (await deliver(store, failed("refund.updated"))).outcome is Outcome.DUPLICATE
    # An older snapshot arriving late never brings a failed refund back to life.
    assert (await deliver(store, created)).outcome is Outcome.DUPLICATE
    assert await balance_of(store, user.sid) == 1000
    assert await entries(store, user.sid) == [
        ("purchase", 1000),
        ("refund", -400),
        ("refund_reversal", 400),
    ]


@pytest.mark.parametrize("status", ["failed", "canceled"])
async def test_a_refund_failed_before_anything_else_never_takes(store, user, status):
    purchase = await ours(store, user, 1000)
    pi, refund_id = pi_of(purchase), new_id("re")
    gone = refund_event(
        "refund.updated", payment_intent=pi, amount=300, status=status, refund_id=refund_id
    )
    assert (await deliver(store, gone)).outcome is Outcome.PARKED
    pending = refund_event(
        "refund.created", payment_intent=pi, amount=300, status="pending", refund_id=refund_id
    )
    assert (await deliver(store, pending)).outcome is Outcome.DUPLICATE
    assert (await deliver(store, purchase)).amount == 1000
    assert await balance_of(store, user.sid) == 1000


@pytest.mark.parametrize("named_first", [True, False])
async def test_a_refund_reported_by_charge_and_by_refund_is_taken_once(store, user, named_first):
    purchase = await ours(store, user, 1000)
    pi = pi_of(purchase)
    await deliver(store, purchase)
    named = refund_event("refund.created", payment_intent=pi, amount=400)
    total = charge_refunded(payment_intent=pi, amount=1000, amount_refunded=400)
    for evt in (named, total) if named_first else (total, named):
        await deliver(store, evt)
    assert await balance_of(store, user.sid) == 600


async def test_a_charge_listing_its_refunds_counts_only_those_that_count(store, user):
    purchase = await ours(store, user, 1000)
    pi = pi_of(purchase)
    listed = [
        refund(payment_intent=pi, amount=300, status="succeeded"),
        refund(payment_intent=pi, amount=200, status="failed"),
    ]
    await deliver(store, purchase)
    evt = event(
        "charge.refunded",
        charge(payment_intent=pi, amount=1000, amount_refunded=300, refunds=listed),
    )
    result = await deliver(store, evt)
    assert (result.outcome, result.amount) == (Outcome.REFUNDED, -300)
    assert await balance_of(store, user.sid) == 700
    # The failed one named there is known: its own late "created" takes nothing.
    late = refund_event("refund.created", payment_intent=pi, amount=200, refund_id=listed[1]["id"])
    assert (await deliver(store, late)).outcome is Outcome.DUPLICATE
    assert await balance_of(store, user.sid) == 700


async def test_running_totals_take_each_step_once_down_to_one_unit(store, user):
    purchase = await ours(store, user, 1000)
    pi = pi_of(purchase)
    await deliver(store, purchase)
    for total, outcome in [(1, Outcome.REFUNDED), (1, Outcome.DUPLICATE), (2, Outcome.REFUNDED)]:
        result = await deliver(
            store, charge_refunded(payment_intent=pi, amount=1000, amount_refunded=total)
        )
        assert result.outcome is outcome
    assert await balance_of(store, user.sid) == 998
    # A smaller total arriving late (an older snapshot) changes nothing.
    late = charge_refunded(payment_intent=pi, amount=1000, amount_refunded=1)
    assert (await deliver(store, late)).outcome is Outcome.DUPLICATE
    assert await balance_of(store, user.sid) == 998


async def test_one_unit_refund_by_id_is_taken(store, user):
    purchase = await ours(store, user, 1000)
    await deliver(store, purchase)
    result = await deliver(
        store, refund_event("refund.created", payment_intent=pi_of(purchase), amount=1)
    )
    assert (result.outcome, result.amount) == (Outcome.REFUNDED, -1)
    assert await balance_of(store, user.sid) == 999


async def test_refunds_never_take_more_than_was_paid(store, user):
    purchase = await ours(store, user, 1000)
    pi = pi_of(purchase)
    await deliver(store, purchase)
    for _ in range(2):
        await deliver(store, refund_event("refund.created", payment_intent=pi, amount=800))
    assert await balance_of(store, user.sid) == 0


async def test_a_refund_in_another_currency_is_unmatched(store, user):
    purchase = await ours(store, user, 1000)
    await deliver(store, purchase)
    evt = refund_event("refund.created", payment_intent=pi_of(purchase), amount=400)
    evt["data"]["object"]["currency"] = "eur"
    result = await deliver(store, evt)
    assert (result.outcome, result.reason) == (Outcome.UNMATCHED, Unmatched.CURRENCY_DIFFERS)
    assert result.detail == "refunded in eur of a payment in usd"
    assert await balance_of(store, user.sid) == 1000


# -- disputes --------------------------------------------------------------------------------


async def test_a_dispute_takes_the_credits_and_a_win_gives_them_back_once(store, user):
    purchase = await ours(store, user, 1000)
    pi, dispute_id = pi_of(purchase), new_id("dp")
    await deliver(store, purchase)

    def disputed(event_type: str, status: str) -> dict[str, Any]:
        return dispute_event(
            event_type, payment_intent=pi, amount=1000, status=status, dispute_id=dispute_id
        )

    taken = await deliver(store, disputed("charge.dispute.created", "needs_response"))
    assert (taken.outcome, taken.amount) == (Outcome.DISPUTED, -1000)
    withdrawn = disputed("charge.dispute.funds_withdrawn", "needs_response")
    assert (await deliver(store, withdrawn)).outcome is Outcome.DUPLICATE
    review = await deliver(store, disputed("charge.dispute.updated", "under_review"))
    assert (review.outcome, review.amount) == (Outcome.RECORDED, 0)
    [held] = await store.read(partial(reversals.open_disputes, limit=10, offset=0))
    assert (held.ref, held.status, held.amount) == (dispute_id, "under_review", 1000)
    assert await balance_of(store, user.sid) == 0

    won = await deliver(store, disputed("charge.dispute.closed", "won"))
    assert (won.outcome, won.amount) == (Outcome.DISPUTE_REVERSED, 1000)
    reinstated = disputed("charge.dispute.funds_reinstated", "won")
    assert (await deliver(store, reinstated)).outcome is Outcome.DUPLICATE
    late = disputed("charge.dispute.funds_withdrawn", "needs_response")
    assert (await deliver(store, late)).outcome is Outcome.DUPLICATE
    assert await balance_of(store, user.sid) == 1000
    assert await store.read(partial(reversals.open_disputes, limit=10, offset=0)) == []
    assert await entries(store, user.sid) == [
        ("dispute", -1000),
        ("dispute_reversal", 1000),
        ("purchase", 1000),
    ]


async def test_a_lost_dispute_keeps_what_it_took(store, user):
    purchase = await ours(store, user, 1000)
    pi, dispute_id = pi_of(purchase), new_id("dp")
    await deliver(store, purchase)
    for event_type, status in [
        ("charge.dispute.created", "needs_response"),
        ("charge.dispute.closed", "lost"),
    ]:
        await deliver(
            store,
            dispute_event(
                event_type, payment_intent=pi, amount=600, status=status, dispute_id=dispute_id
            ),
        )
    assert await balance_of(store, user.sid) == 400


async def test_an_inquiry_holds_until_it_closes(store, user):
    purchase = await ours(store, user, 1000)
    pi, dispute_id = pi_of(purchase), new_id("dp")
    await deliver(store, purchase)
    opened = dispute_event(
        "charge.dispute.created",
        payment_intent=pi,
        amount=1000,
        status="warning_needs_response",
        dispute_id=dispute_id,
    )
    assert (await deliver(store, opened)).outcome is Outcome.DISPUTED
    closed = dispute_event(
        "charge.dispute.closed",
        payment_intent=pi,
        amount=1000,
        status="warning_closed",
        dispute_id=dispute_id,
    )
    assert (await deliver(store, closed)).outcome is Outcome.DISPUTE_REVERSED
    assert await balance_of(store, user.sid) == 1000


async def test_a_dispute_holds_no_more_than_is_still_credited(store, user):
    purchase = await ours(store, user, 1000)
    pi, refund_id = pi_of(purchase), new_id("re")
    await deliver(store, purchase)
    await deliver(
        store, refund_event("refund.created", payment_intent=pi, amount=600, refund_id=refund_id)
    )
    held = await deliver(
        store, dispute_event("charge.dispute.created", payment_intent=pi, amount=1000)
    )
    assert (held.outcome, held.amount) == (Outcome.DISPUTED, -400)
    assert await balance_of(store, user.sid) == 0
    # The refund fails: the dispute now holds the whole payment, so nothing comes back.
    failed = await deliver(
        store,
        refund_event(
            "refund.failed", payment_intent=pi, amount=600, status="failed", refund_id=refund_id
        ),
    )
    assert (failed.outcome, failed.amount) == (Outcome.RECORDED, 0)
    assert await balance_of(store, user.sid) == 0
    assert await store.read(ledger.verify_ledger) == []


async def test_a_dispute_of_spent_credits_makes_the_balance_negative(store, user):
    purchase = await ours(store, user, 1000)
    await deliver(store, purchase)
    spent = LedgerEntry(user.sid, "admin", EntryKind.ADJUSTMENT, "spent-1", -700, "usd")
    await store.write(partial(ledger.append, entry=spent, now=int(time.time())))
    await deliver(
        store, dispute_event("charge.dispute.created", payment_intent=pi_of(purchase), amount=1000)
    )
    assert await balance_of(store, user.sid) == -700


# -- what is not ours or cannot be applied ---------------------------------------------------


@pytest.mark.parametrize(
    ("evt", "name"),
    [
        (refund_event("refund.updated", payment_intent="pi_1", amount=5, status="mystery"), "re"),
        (
            dispute_event("charge.dispute.updated", payment_intent="pi_1", amount=5, status="x"),
            "dp",
        ),
    ],
)
async def test_an_unknown_status_is_unmatched_with_its_reason(store, user, evt, name):
    assert normalise_event(evt).kind is EventKind.UNKNOWN
    result = await deliver(store, evt)
    assert (result.outcome, result.reason) == (Outcome.UNMATCHED, Unmatched.UNKNOWN_STATE)
    assert result.detail.startswith("refund " if name == "re" else "dispute ")
    assert "unknown status" in result.detail


def _signed(evt: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = body_of(evt)
    return body.encode(), {"Stripe-Signature": sign(body, SIGNING_SECRET)}


async def test_connected_account_events_are_ignored_unless_the_account_is_ours(store, user):
    evt = await ours(store, user)
    evt["account"] = "acct_1Connected"
    default = StripeWebhooks([Secret(SIGNING_SECRET)])
    ignored = default.parse_webhook(*_signed(evt))
    assert ignored.kind is EventKind.IGNORED
    assert ignored.note == "event of connected account acct_1Connected"
    assert (await fulfil(store, ignored)).outcome is Outcome.IGNORED
    assert await balance_of(store, user.sid) == 0

    ours_too = StripeWebhooks([Secret(SIGNING_SECRET)], account="acct_1Connected")
    assert ours_too.parse_webhook(*_signed(evt)).kind is EventKind.PAID


def test_a_thin_event_is_ignored_not_refused():
    thin = {
        "id": "evt_test_65R",
        "object": "v2.core.event",
        "type": "v1.billing.meter.error_report_triggered",
        "created": "2024-09-17T06:20:52.246Z",
        "related_object": {"id": "mtr_1", "type": "billing.meter", "url": "/v1/billing/meters"},
    }
    parsed = StripeWebhooks([Secret(SIGNING_SECRET)]).parse_webhook(*_signed(thin))
    assert (parsed.kind, parsed.event_id) == (EventKind.IGNORED, "evt_test_65R")
    assert "thin" in parsed.note
