"""A card payment's whole life against the sandbox, through the official SDK: paid on the hosted
page, refunded, the refund failing, disputed and the dispute won or lost; delivered by webhook
to the real daemon, or found by reconciliation when no webhook ever arrives.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hero_onboarding.billing import Outcome, fulfil
from hero_onboarding.payments.stripe_provider import StripeCheckouts, normalise_event
from hero_onboarding.primitives import Secret
from hero_onboarding.store import Store
from tests.admin_kit import running_admin, short_socket_dir
from tests.conftest import balance_of, open_checkout, register, sandbox_config, start_sandbox
from tests.sandbox_kit import API_KEY, Harness
from tests.shop_kit import Shop
from tests.test_payment_flow import balance_of as shown_balance_of

DISPUTED_CARD = "4000000000000259"  # pays, then the issuer disputes it as fraudulent
ADDRESS = "4a1:2b3c:4d5e:6f70:8192:a3b4:c5d6:e7f8"


async def intent_of(shop: Shop, checkout_id: str) -> str:
    session = await shop.sandbox.sdk.v1.checkout.sessions.retrieve_async(checkout_id)
    assert isinstance(session.payment_intent, str)
    return session.payment_intent


async def test_a_disputed_card_payment_is_taken_back_and_given_back_when_won(shop: Shop) -> None:
    buyer = await shop.log_in()
    page = await shop.start_checkout(buyer, 1000)
    assert (await shop.sandbox.pay(page, card_number=DISPUTED_CARD)).status == 303
    await shop.wait_for_outcomes("credited", "disputed", "duplicate")  # created, funds_withdrawn
    assert await shown_balance_of(shop, buyer) == 0
    home = (await buyer.get("/")).html
    assert "<td>Payment disputed</td>" in home

    [dispute] = (await shop.sandbox.sdk.v1.disputes.list_async()).data
    await shop.sandbox.sdk_control(f"/_sandbox/disputes/{dispute.id}/win")
    await shop.wait_for_outcomes(
        "credited", "disputed", "duplicate", "dispute_reversed", "duplicate"
    )
    assert await shown_balance_of(shop, buyer) == 1000


async def test_a_refund_that_fails_gives_the_credits_back(shop: Shop) -> None:
    buyer = await shop.log_in()
    checkout_id, _ = await shop.pay(buyer, 1000)
    await shop.wait_for_outcomes("credited")
    refund = await shop.sandbox.sdk.v1.refunds.create_async(
        {"payment_intent": await intent_of(shop, checkout_id), "amount": 400}
    )
    # refund.created and charge.refunded report one refund: taken once.
    await shop.wait_for_outcomes("credited", "refunded", "recorded")
    assert await shown_balance_of(shop, buyer) == 600

    await shop.sandbox.sdk_control(f"/_sandbox/refunds/{refund.id}/fail")
    # refund.updated, charge.refund.updated and refund.failed report one failure: back once.
    await shop.wait_for_outcomes(
        "credited", "refunded", "recorded", "refund_reversed", "duplicate", "duplicate"
    )
    assert await shown_balance_of(shop, buyer) == 1000


async def test_reconciliation_alone_ends_where_stripe_does(
    aiohttp_server, settings, store: Store
) -> None:
    """No webhook ever arrives. A payment is refunded 3.00, refunded 2.00 more (which fails),
    and disputed for the rest, which is lost; a refund report that did reach us came before the
    purchase. Two runs later the balance is Stripe's: 10.00 - 3.00 - 7.00 = 0, then the same."""
    sandbox: Harness = await start_sandbox(aiohttp_server, sandbox_config(None))  # no webhooks
    user = await register(store, ADDRESS)
    reconciler = StripeCheckouts(Secret(API_KEY), api_base=sandbox.url)
    admin_settings = replace(settings, socket_dir=short_socket_dir())
    try:
        session = await sandbox.new_session(
            client_reference_id=user.sid, metadata={"sid": user.sid}
        )
        await open_checkout(store, user.sid, session.id, 1000)
        assert (await sandbox.pay(session.url)).status == 303
        paid = await sandbox.sdk.v1.checkout.sessions.retrieve_async(session.id)
        pi = paid.payment_intent
        assert isinstance(pi, str)
        await sandbox.sdk.v1.refunds.create_async({"payment_intent": pi, "amount": 300})
        failing = await sandbox.sdk.v1.refunds.create_async({"payment_intent": pi, "amount": 200})
        await sandbox.sdk_control(f"/_sandbox/refunds/{failing.id}/fail")
        dispute = await sandbox.sdk_control("/_sandbox/disputes", payment_intent=pi, amount=700)
        await sandbox.sdk_control(f"/_sandbox/disputes/{dispute.id}/lose")

        # The one webhook that got through: the first refund, before its purchase.
        [early] = [
            e for e in await events_of(sandbox, "refund.created")
            if e["data"]["object"]["amount"] == 300
        ]  # fmt: skip
        assert (await fulfil(store, normalise_event(early))).outcome is Outcome.PARKED

        async with running_admin(admin_settings, store, reconciler=reconciler) as admin:
            first = await admin.client.call("reconcile", {"since": session.created - 10})
            assert await balance_of(store, user.sid) == 0
            second = await admin.client.call("reconcile", {"since": session.created - 10})
        assert [c["amount"] for c in first["credited"]] == [1000 - 300]
        assert sum(r["amount"] for r in first["reversed"]) == -700
        assert second["credited"] == second["reversed"] == []
        assert second["already_done"] == second["checked"]
        assert await balance_of(store, user.sid) == 0
        disputes = await stripe_disputes(sandbox)
        assert [(d["id"], d["status"]) for d in disputes] == [(dispute.id, "lost")]
    finally:
        await reconciler.close()
        await sandbox.close()


async def events_of(sandbox: Harness, event_type: str) -> list[dict[str, Any]]:
    listed = await sandbox.sdk.v1.events.list_async({"type": event_type})
    return [event.to_dict() for event in listed.data]


async def stripe_disputes(sandbox: Harness) -> list[dict[str, Any]]:
    listed = await sandbox.sdk.v1.disputes.list_async()
    return [{"id": d.id, "status": d.status} for d in listed.data]
