"""GET /v1/events as Stripe serves it, the way the service's reconciliation reads it: `type`,
`types[]`, `created[...]`, `limit`, `starting_after`, `has_more`, newest first.
"""

from __future__ import annotations

import pytest
import stripe

from hero_onboarding.payments.stripe_api import (
    DISPUTE_EVENT_TYPES,
    HANDLED_EVENT_TYPES,
    REFUND_EVENT_TYPES,
)
from tests.sandbox_kit import API_KEY, FakeClock, Harness


async def lifecycle(sandbox: Harness, clock: FakeClock) -> dict[str, int]:
    """A paid charge refunded, the refund failed, the charge disputed, evidence submitted and
    the dispute won, one step a minute.

    Returns when (by the fake clock) each step happened.
    """
    at: dict[str, int] = {"paid": int(clock.now)}
    intent_id = await sandbox.paid_intent()
    clock.advance(60)
    at["refunded"] = int(clock.now)
    refund = await sandbox.sdk.v1.refunds.create_async({"payment_intent": intent_id, "amount": 200})
    clock.advance(60)
    at["failed"] = int(clock.now)
    await sandbox.sdk_control(f"/_sandbox/refunds/{refund.id}/fail")
    clock.advance(60)
    at["disputed"] = int(clock.now)
    dispute = await sandbox.sdk_control("/_sandbox/disputes", payment_intent=intent_id)
    clock.advance(60)
    at["won"] = int(clock.now)
    await sandbox.sdk.v1.disputes.update_async(dispute.id, {"evidence": {"receipt": "file_1"}})
    await sandbox.sdk_control(f"/_sandbox/disputes/{dispute.id}/win")
    return at


async def test_the_reconciliation_reads_every_handled_type_it_can_get(
    clocked_sandbox: Harness, clock: FakeClock
) -> None:
    await lifecycle(clocked_sandbox, clock)
    events = clocked_sandbox.sdk.v1.events
    found = await events.list_async({"types": list(HANDLED_EVENT_TYPES), "limit": 100})
    listed = {e.type for e in found.data}
    emitted = {e["type"] for e in clocked_sandbox.engine.state.events.values()}
    assert listed == emitted & set(HANDLED_EVENT_TYPES)
    assert listed >= set(REFUND_EVENT_TYPES + DISPUTE_EVENT_TYPES)
    assert "payment_intent.created" not in listed  # only what was asked for
    created = [e.created for e in found.data]
    assert created == sorted(created, reverse=True)  # newest first

    refunds = await events.list_async({"types": list(REFUND_EVENT_TYPES)})
    assert {e.type for e in refunds.data} == set(REFUND_EVENT_TYPES)
    disputes = await events.list_async({"type": "charge.dispute.*"})
    assert [e.type for e in reversed(disputes.data)] == [
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.updated",
        "charge.dispute.closed",
        "charge.dispute.funds_reinstated",
    ]
    assert {e.type for e in disputes.data} == set(DISPUTE_EVENT_TYPES)
    exact = await events.list_async({"type": "charge.refunded"})
    assert [e.data.object.object for e in exact.data] == ["charge"]


async def test_created_ranges_and_cursor_pagination(
    clocked_sandbox: Harness, clock: FakeClock
) -> None:
    at = await lifecycle(clocked_sandbox, clock)
    events = clocked_sandbox.sdk.v1.events
    window = await events.list_async(
        {"created": {"gte": at["failed"], "lt": at["disputed"]}, "limit": 100}
    )
    assert [e.type for e in reversed(window.data)] == [
        "refund.failed", "refund.updated", "charge.refund.updated",
    ]  # fmt: skip
    after = await events.list_async({"created": {"gt": at["disputed"]}})
    closing = {"charge.dispute.updated", "charge.dispute.closed", "charge.dispute.funds_reinstated"}
    assert {e.type for e in after.data} == closing
    upto = await events.list_async({"created": {"lte": at["paid"]}, "limit": 100})
    assert all(e.created <= at["paid"] for e in upto.data)
    assert "checkout.session.completed" in {e.type for e in upto.data}

    everything = await events.list_async({"limit": 100})
    walked: list[str] = []
    page = await events.list_async({"limit": 3})
    while True:
        walked.extend(e.id for e in page.data)
        if not page.has_more:
            break
        page = await events.list_async({"limit": 3, "starting_after": page.data[-1].id})
    assert walked == [e.id for e in everything.data]
    assert len(walked) > 3


async def test_types_as_the_bracket_array_of_a_raw_request(sandbox: Harness) -> None:
    intent_id = await sandbox.paid_intent()
    await sandbox.sdk.v1.refunds.create_async({"payment_intent": intent_id})
    query = "types[]=refund.created&types[]=charge.refunded&limit=10"
    async with sandbox.http.get(
        f"{sandbox.url}/v1/events?{query}", headers={"Authorization": f"Bearer {API_KEY}"}
    ) as response:
        body = await response.json()
    assert response.status == 200, body
    assert sorted(e["type"] for e in body["data"]) == ["charge.refunded", "refund.created"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"type": "refund.created", "types": ["refund.updated"]}, "either type or types"),
        ({"types": [f"refund.t{n}" for n in range(21)]}, "at most 20"),
        ({"limit": 101}, "between 1 and 100"),
        ({"starting_after": "evt_missing"}, "No such object"),
    ],
)
async def test_bad_event_queries_get_stripes_errors(
    stripe_client: stripe.StripeClient, query: dict[str, object], message: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:  # bad queries on purpose:
        await stripe_client.v1.events.list_async(query)  # type: ignore[arg-type]
    assert message in str(caught.value.user_message)
