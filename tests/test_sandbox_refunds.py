"""Refunds in the sandbox, through the official SDK: every status, the charge's running total,
and Stripe's events for each change (every object and payload checked against Stripe's schema).
"""

from __future__ import annotations

import pytest
import stripe

from tests.sandbox_kit import Harness, Receiver, wait_for_types
from tests.waiting import wait_until_async

REFUND_FAILS_CARD = "4000 0000 0000 5126"


def refund_events(sandbox: Harness, refund_id: str) -> list[str]:
    """The types of the events about one refund, oldest first."""
    return [
        e["type"]
        for e in sandbox.engine.state.events.values()
        if e["data"]["object"]["id"] == refund_id
    ]


async def test_partial_then_full_refund_listed_retrieved_and_announced(
    sandbox: Harness, stripe_client: stripe.StripeClient, receiver: Receiver
) -> None:
    intent_id = await sandbox.paid_intent()
    intent = await stripe_client.v1.payment_intents.retrieve_async(intent_id)
    charge_id = intent.latest_charge
    assert isinstance(charge_id, str)
    refunds = stripe_client.v1.refunds

    first = await refunds.create_async(
        {"payment_intent": intent_id, "amount": 300, "reason": "requested_by_customer"}
    )
    assert (first.object, first.amount, first.status, first.charge) == (
        "refund", 300, "succeeded", charge_id,
    )  # fmt: skip
    assert first.payment_intent == intent_id
    assert first.destination_details is not None
    assert first.destination_details.type == "card"
    rest = await refunds.create_async({"charge": charge_id, "metadata": {"ticket": "T-1"}})
    assert rest.amount == 700  # no amount: the rest of the charge

    fetched = await refunds.retrieve_async(first.id)
    assert (fetched.id, fetched.reason) == (first.id, "requested_by_customer")
    by_intent = await refunds.list_async({"payment_intent": intent_id})
    assert [r.id for r in by_intent.data] == [rest.id, first.id]  # newest first
    page = await refunds.list_async({"charge": charge_id, "limit": 1})
    assert ([r.id for r in page.data], page.has_more) == ([rest.id], True)
    after = await refunds.list_async({"limit": 1, "starting_after": rest.id})
    assert ([r.id for r in after.data], after.has_more) == ([first.id], False)
    later = await refunds.list_async({"created": {"gt": rest.created}})
    assert later.data == []
    assert (await refunds.list_async({"payment_intent": "pi_other"})).data == []

    charge = await stripe_client.v1.charges.retrieve_async(charge_id)
    assert (charge.amount_refunded, charge.refunded) == (1000, True)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await refunds.create_async({"payment_intent": intent_id, "amount": 1})
    assert caught.value.code == "charge_already_refunded"

    await wait_for_types(receiver, "refund.created", "charge.refunded")
    refunded = [r.event for r in receiver.of_type("charge.refunded")]
    assert [e["data"]["object"]["object"] for e in refunded] == ["charge", "charge"]
    assert [e["data"]["object"]["amount_refunded"] for e in refunded] == [300, 1000]
    assert refunded[1]["data"]["previous_attributes"] == {
        "amount_refunded": 300,
        "refunded": False,
    }
    created = [r.event["data"]["object"]["id"] for r in receiver.of_type("refund.created")]
    assert created == [first.id, rest.id]


async def test_a_failed_refund_gives_the_money_back_to_the_charge(
    sandbox: Harness, stripe_client: stripe.StripeClient, receiver: Receiver
) -> None:
    intent_id = await sandbox.paid_intent()
    refund = await stripe_client.v1.refunds.create_async(
        {"payment_intent": intent_id, "amount": 400}
    )
    failed = await sandbox.sdk_control(
        f"/_sandbox/refunds/{refund.id}/fail", failure_reason="lost_or_stolen_card"
    )
    assert (failed.status, failed.failure_reason) == ("failed", "lost_or_stolen_card")
    fetched = await stripe_client.v1.refunds.retrieve_async(refund.id)
    assert fetched.status == "failed"
    assert isinstance(refund.charge, str)
    charge = await stripe_client.v1.charges.retrieve_async(refund.charge)
    assert (charge.amount_refunded, charge.refunded) == (0, False)

    await wait_for_types(receiver, "refund.failed", "refund.updated", "charge.refund.updated")
    assert refund_events(sandbox, refund.id) == [
        "refund.created", "refund.failed", "refund.updated", "charge.refund.updated",
    ]  # fmt: skip
    updated = receiver.of_type("charge.refund.updated")[0].event["data"]
    assert updated["object"]["status"] == "failed"
    assert updated["previous_attributes"] == {"status": "succeeded"}

    whole = await stripe_client.v1.refunds.create_async({"payment_intent": intent_id})
    assert whole.amount == 1000  # the failed 400 is refundable again
    with pytest.raises(stripe.InvalidRequestError, match="only pending, requires_action"):
        await sandbox.sdk_control(f"/_sandbox/refunds/{refund.id}/fail")


async def test_a_pending_refund_counts_then_succeeds(
    sandbox: Harness, stripe_client: stripe.StripeClient, receiver: Receiver
) -> None:
    intent_id = await sandbox.paid_intent()
    pending = await sandbox.sdk_control(
        "/_sandbox/refunds", payment_intent=intent_id, amount=250, status="pending"
    )
    assert pending.status == "pending"
    charge = await stripe_client.v1.charges.retrieve_async(pending.charge)
    assert charge.amount_refunded == 250  # promised money counts, as on Stripe
    created = next(e for e in sandbox.engine.state.events.values() if e["type"] == "refund.created")
    assert created["request"] == {"id": None, "idempotency_key": None}  # no API request

    done = await sandbox.sdk_control(f"/_sandbox/refunds/{pending.id}/succeed")
    assert done.status == "succeeded"
    await wait_for_types(receiver, "charge.refund.updated")
    assert refund_events(sandbox, pending.id) == [
        "refund.created", "refund.updated", "charge.refund.updated",
    ]  # fmt: skip
    assert receiver.of_type("refund.updated")[0].event["data"]["previous_attributes"] == {
        "status": "pending"
    }
    with pytest.raises(stripe.InvalidRequestError, match="only a pending refund"):
        await sandbox.sdk_control(f"/_sandbox/refunds/{pending.id}/succeed")


async def test_a_refund_that_requires_action_can_be_canceled(
    sandbox: Harness, stripe_client: stripe.StripeClient
) -> None:
    intent_id = await sandbox.paid_intent()
    waiting = await sandbox.sdk_control(
        "/_sandbox/refunds", payment_intent=intent_id, status="requires_action"
    )
    canceled = await stripe_client.v1.refunds.cancel_async(waiting.id)
    assert canceled.status == "canceled"
    # A failure the clock still had scheduled (a 5126 card's) finds it canceled: it lets it be.
    transitions = sandbox.engine.state.refund_transitions
    transitions[waiting.id] = {"status": "failed", "failure_reason": "unknown", "due_at": 0}
    assert sandbox.engine.run_due() is None
    assert transitions == {}
    charge = await stripe_client.v1.charges.retrieve_async(waiting.charge)
    assert (charge.amount_refunded, charge.refunded) == (0, False)
    done = await stripe_client.v1.refunds.create_async({"payment_intent": intent_id})
    with pytest.raises(stripe.InvalidRequestError, match="status of requires_action"):
        await stripe_client.v1.refunds.cancel_async(done.id)


async def test_the_refund_failure_test_card_fails_its_refunds_on_its_own(
    sandbox: Harness, stripe_client: stripe.StripeClient, receiver: Receiver
) -> None:
    intent_id = await sandbox.paid_intent(REFUND_FAILS_CARD)
    refund = await stripe_client.v1.refunds.create_async({"payment_intent": intent_id})
    assert refund.status == "succeeded"  # Stripe: succeeded first, failed later

    async def failed() -> bool:
        fetched = await stripe_client.v1.refunds.retrieve_async(refund.id)
        return fetched.status == "failed"

    await wait_until_async(failed, timeout=10, what="the test card's refund fails")
    fetched = await stripe_client.v1.refunds.retrieve_async(refund.id)
    assert fetched.failure_reason == "expired_or_canceled_card"
    await wait_for_types(receiver, "refund.failed")
    assert isinstance(refund.charge, str)
    charge = await stripe_client.v1.charges.retrieve_async(refund.charge)
    assert charge.amount_refunded == 0


@pytest.mark.parametrize(
    ("params", "status", "code", "message"),
    [
        ({"payment_intent": "pi_missing"}, 404, "resource_missing", "No such payment_intent"),
        ({"charge": "ch_missing"}, 404, "resource_missing", "No such charge"),
        ({}, 400, None, "exactly one of charge or payment_intent"),
        ({"amount": 5000}, 400, "amount_too_large", "must be between 1 and"),
        ({"amount": 0}, 400, None, "must be between 1 and"),
        ({"reason": "bored"}, 400, None, "Invalid reason"),
    ],
)
async def test_bad_refund_requests_get_stripes_errors(
    sandbox: Harness,
    stripe_client: stripe.StripeClient,
    params: dict[str, object],
    status: int,
    code: str | None,
    message: str,
) -> None:
    intent_id = await sandbox.paid_intent()
    if "amount" in params or "reason" in params:
        params = {"payment_intent": intent_id, **params}
    with pytest.raises(stripe.InvalidRequestError) as caught:  # bad params on purpose:
        await stripe_client.v1.refunds.create_async(params)  # type: ignore[arg-type]
    assert (caught.value.http_status, caught.value.code) == (status, code)
    assert message in str(caught.value.user_message)
    assert sandbox.engine.state.refunds == {}


async def test_bad_refund_controls_get_stripes_errors(sandbox: Harness) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await sandbox.sdk_control("/_sandbox/refunds/re_missing/fail")
    assert (caught.value.http_status, caught.value.code) == (404, "resource_missing")
    intent_id = await sandbox.paid_intent()
    refund = await sandbox.sdk_control("/_sandbox/refunds", payment_intent=intent_id)
    with pytest.raises(stripe.InvalidRequestError, match="Invalid failure_reason"):
        await sandbox.sdk_control(f"/_sandbox/refunds/{refund.id}/fail", failure_reason="gone")
    with pytest.raises(stripe.InvalidRequestError, match="Invalid status"):
        await sandbox.sdk_control("/_sandbox/refunds", payment_intent=intent_id, status="won")
