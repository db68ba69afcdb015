"""Disputes in the sandbox: Stripe's dispute test cards, the /_sandbox controls that win, lose
or open them, and the SDK reading them (every object and payload checked against the schema).
"""

from __future__ import annotations

import pytest
import stripe

from tests.conftest import sandbox_config, start_sandbox
from tests.sandbox_kit import Harness, Receiver, wait_for_types
from tests.waiting import wait_until_async

DISPUTED_CARD = "4000 0000 0000 0259"
INQUIRY_CARD = "4000 0000 0000 1976"


def dispute_events(sandbox: Harness, dispute_id: str) -> list[tuple[str, str]]:
    """(type, status) of every event about one dispute, oldest first."""
    return [
        (e["type"], e["data"]["object"]["status"])
        for e in sandbox.engine.state.events.values()
        if e["data"]["object"]["id"] == dispute_id
    ]


async def test_the_fraudulent_test_card_pays_then_is_disputed(
    sandbox: Harness, stripe_client: stripe.StripeClient, receiver: Receiver
) -> None:
    intent_id = await sandbox.paid_intent(DISPUTED_CARD)
    intent = await stripe_client.v1.payment_intents.retrieve_async(intent_id)
    assert intent.status == "succeeded"
    assert isinstance(intent.latest_charge, str)
    charge = await stripe_client.v1.charges.retrieve_async(intent.latest_charge)
    assert charge.disputed is True

    listed = await stripe_client.v1.disputes.list_async({"payment_intent": intent_id})
    [dispute] = listed.data
    assert dispute.id.startswith("du_")
    assert (dispute.status, dispute.reason, dispute.amount) == (
        "needs_response", "fraudulent", 1000,
    )  # fmt: skip
    assert dispute.charge == charge.id
    assert dispute.is_charge_refundable is False
    assert [t.amount for t in dispute.balance_transactions] == [-1000]
    assert dispute.evidence_details.due_by is not None
    assert dispute.evidence_details.due_by > dispute.created
    await wait_for_types(receiver, "charge.dispute.created", "charge.dispute.funds_withdrawn")
    assert dispute_events(sandbox, dispute.id) == [
        ("charge.dispute.created", "needs_response"),
        ("charge.dispute.funds_withdrawn", "needs_response"),
    ]
    sent = receiver.of_type("charge.dispute.created")[0].event
    assert sent["data"]["object"]["balance_transactions"] == []  # a snapshot: before withdrawal

    with pytest.raises(stripe.InvalidRequestError) as caught:
        await stripe_client.v1.refunds.create_async({"payment_intent": intent_id})
    assert caught.value.code == "charge_disputed"  # the issuer already took the money back


async def test_a_won_dispute_reinstates_the_funds(
    sandbox: Harness, stripe_client: stripe.StripeClient, receiver: Receiver
) -> None:
    intent_id = await sandbox.paid_intent()
    opened = await sandbox.sdk_control(
        "/_sandbox/disputes", payment_intent=intent_id, amount=600, reason="product_not_received"
    )
    assert (opened.status, opened.amount, opened.reason) == (
        "needs_response", 600, "product_not_received",
    )  # fmt: skip
    won = await sandbox.sdk_control(f"/_sandbox/disputes/{opened.id}/win")
    assert won.status == "won"
    assert [t.amount for t in won.balance_transactions] == [-600, 600]
    fetched = await stripe_client.v1.disputes.retrieve_async(opened.id)
    assert fetched.status == "won"
    await wait_for_types(receiver, "charge.dispute.funds_reinstated")
    assert dispute_events(sandbox, opened.id) == [
        ("charge.dispute.created", "needs_response"),
        ("charge.dispute.funds_withdrawn", "needs_response"),
        ("charge.dispute.closed", "won"),
        ("charge.dispute.funds_reinstated", "won"),
    ]
    closed = receiver.of_type("charge.dispute.closed")[0].event["data"]
    assert closed["previous_attributes"] == {"status": "needs_response"}
    with pytest.raises(stripe.InvalidRequestError, match="already closed"):
        await sandbox.sdk_control(f"/_sandbox/disputes/{opened.id}/lose")


async def test_evidence_is_staged_then_submitted_for_review(
    sandbox: Harness, stripe_client: stripe.StripeClient, receiver: Receiver
) -> None:
    intent_id = await sandbox.paid_intent(DISPUTED_CARD)
    [dispute] = (await stripe_client.v1.disputes.list_async({"payment_intent": intent_id})).data
    staged = await stripe_client.v1.disputes.update_async(
        dispute.id,
        {"evidence": {"customer_name": "Ada Buyer", "product_description": "Hero crédits"},
         "metadata": {"case": "42"}, "submit": False},
    )  # fmt: skip
    assert (staged.status, staged.evidence_details.has_evidence) == ("needs_response", True)
    assert staged.evidence.product_description == "Hero crédits"
    assert staged.evidence_details.submission_count == 0
    submitted = await stripe_client.v1.disputes.update_async(dispute.id)  # submit: the default
    assert (submitted.status, submitted.evidence_details.submission_count) == ("under_review", 1)
    assert submitted.metadata.to_dict() == {"case": "42"}
    await wait_until_async(
        lambda: _arrived(receiver, "charge.dispute.updated", 2), timeout=10, what="2 updates"
    )
    updates = [r.event["data"] for r in receiver.of_type("charge.dispute.updated")]
    assert updates[0]["previous_attributes"]["evidence"]["customer_name"] is None
    assert updates[1]["previous_attributes"]["status"] == "needs_response"
    with pytest.raises(stripe.InvalidRequestError, match="only be added while it needs"):
        await stripe_client.v1.disputes.update_async(dispute.id, {"submit": True})
    won = await sandbox.sdk_control(f"/_sandbox/disputes/{dispute.id}/win")
    assert won.status == "won"  # a dispute under review is decided as any open one

    inquiry_intent = await sandbox.paid_intent(INQUIRY_CARD)
    [inquiry] = (
        await stripe_client.v1.disputes.list_async({"payment_intent": inquiry_intent})
    ).data
    reviewed = await stripe_client.v1.disputes.update_async(
        inquiry.id, {"evidence": {"uncategorized_text": "Delivered by mail"}}
    )
    assert reviewed.status == "warning_under_review"
    with pytest.raises(stripe.InvalidRequestError, match="unknown parameter"):
        await stripe_client.v1.disputes.update_async(
            inquiry.id,
            {"evidence": {"mood": "calm"}},  # type: ignore[arg-type]  # unknown on purpose
        )


async def _arrived(receiver: Receiver, event_type: str, count: int) -> bool:
    return len(receiver.of_type(event_type)) >= count


async def test_a_lost_dispute_closes_lost_by_control_or_by_the_api(
    sandbox: Harness, stripe_client: stripe.StripeClient
) -> None:
    first = await sandbox.paid_intent()
    opened = await sandbox.sdk_control("/_sandbox/disputes", payment_intent=first)
    lost = await sandbox.sdk_control(f"/_sandbox/disputes/{opened.id}/lose")
    assert lost.status == "lost"
    assert dispute_events(sandbox, opened.id)[-1] == ("charge.dispute.closed", "lost")

    second = await sandbox.paid_intent(DISPUTED_CARD)
    [dispute] = (await stripe_client.v1.disputes.list_async({"payment_intent": second})).data
    accepted = await stripe_client.v1.disputes.close_async(dispute.id)
    assert accepted.status == "lost"
    closing = next(
        e
        for e in reversed(sandbox.engine.state.events.values())
        if e["type"] == "charge.dispute.closed"
    )
    assert closing["request"]["id"] is not None  # caused by our API call
    everything = await stripe_client.v1.disputes.list_async({"limit": 1})
    assert ([d.id for d in everything.data], everything.has_more) == ([dispute.id], True)


async def test_an_inquiry_opens_as_a_warning_and_closes_as_one(
    sandbox: Harness, stripe_client: stripe.StripeClient, receiver: Receiver
) -> None:
    intent_id = await sandbox.paid_intent(INQUIRY_CARD)
    [inquiry] = (await stripe_client.v1.disputes.list_async({"payment_intent": intent_id})).data
    assert (inquiry.status, inquiry.balance_transactions) == ("warning_needs_response", [])
    assert inquiry.payment_method_details is not None
    assert inquiry.payment_method_details.card is not None
    assert inquiry.payment_method_details.card.case_type == "inquiry"
    refund = await stripe_client.v1.refunds.create_async(
        {"payment_intent": intent_id, "amount": 100}
    )
    assert refund.status == "succeeded"  # an inquiry takes no money: refunds still work
    closed = await sandbox.sdk_control(f"/_sandbox/disputes/{inquiry.id}/win")
    assert closed.status == "warning_closed"
    await wait_for_types(receiver, "charge.dispute.closed")
    assert dispute_events(sandbox, inquiry.id) == [
        ("charge.dispute.created", "warning_needs_response"),
        ("charge.dispute.closed", "warning_closed"),
    ]
    opened = await sandbox.sdk_control("/_sandbox/disputes", payment_intent=intent_id, inquiry=True)
    assert opened.amount == 900  # what the refund left


async def test_refunds_and_disputes_in_any_order(
    sandbox: Harness, stripe_client: stripe.StripeClient
) -> None:
    intent_id = await sandbox.paid_intent()
    await stripe_client.v1.refunds.create_async({"payment_intent": intent_id, "amount": 1000})
    with pytest.raises(stripe.InvalidRequestError, match="fully refunded"):
        await sandbox.sdk_control("/_sandbox/disputes", payment_intent=intent_id)

    other = await sandbox.paid_intent()
    opened = await sandbox.sdk_control("/_sandbox/disputes", payment_intent=other, amount=500)
    with pytest.raises(stripe.InvalidRequestError, match="already has an open dispute"):
        await sandbox.sdk_control("/_sandbox/disputes", payment_intent=other)
    await sandbox.sdk_control(f"/_sandbox/disputes/{opened.id}/win")
    refund = await stripe_client.v1.refunds.create_async({"payment_intent": other})
    assert refund.amount == 1000  # a won dispute left the charge whole and refundable


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        ("/_sandbox/disputes", {"payment_intent": "pi_missing"}, 404, "No such payment_intent"),
        ("/_sandbox/disputes", {}, 400, "exactly one of charge or payment_intent"),
        ("/_sandbox/disputes/du_missing/win", {}, 404, "No such dispute"),
        ("/_sandbox/disputes/du_missing/lose", {"colour": "red"}, 400, "unknown parameter"),
    ],
)
async def test_bad_dispute_controls_get_stripes_errors(
    sandbox: Harness, path: str, params: dict[str, str], status: int, message: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await sandbox.sdk_control(path, **params)
    assert caught.value.http_status == status
    assert message in str(caught.value.user_message)


async def test_bad_dispute_amounts_are_refused(sandbox: Harness) -> None:
    intent_id = await sandbox.paid_intent()
    for amount in (0, 1001):
        with pytest.raises(stripe.InvalidRequestError, match="must be between 1 and"):
            await sandbox.sdk_control("/_sandbox/disputes", payment_intent=intent_id, amount=amount)
    assert sandbox.engine.state.disputes == {}


async def test_refunds_and_disputes_survive_a_restart(
    tmp_path, aiohttp_server, receiver: Receiver
) -> None:
    config = sandbox_config(receiver.url, state_file=tmp_path / "state.json")
    first = await start_sandbox(aiohttp_server, config)
    try:
        intent_id = await first.paid_intent(DISPUTED_CARD)
        inquiry_intent = await first.paid_intent(INQUIRY_CARD)
        refund = await first.sdk.v1.refunds.create_async(
            {"payment_intent": inquiry_intent, "amount": 100}
        )
        [dispute] = (await first.sdk.v1.disputes.list_async({"payment_intent": intent_id})).data
    finally:
        await first.close()
    await first.app.shutdown()
    await first.app.cleanup()

    second = await start_sandbox(
        aiohttp_server, sandbox_config(receiver.url, state_file=config.state_file)
    )
    try:
        kept = await second.sdk.v1.refunds.retrieve_async(refund.id)
        assert (kept.amount, kept.status) == (100, "succeeded")
        assert (await second.sdk.v1.disputes.retrieve_async(dispute.id)).status == "needs_response"
        won = await second.sdk_control(f"/_sandbox/disputes/{dispute.id}/win")
        assert won.status == "won"
    finally:
        await second.close()
    assert first.schema_failures == second.schema_failures == []
