"""POST /webhooks/stripe over real HTTP: every field of every delivery record, and the metrics.

Written to kill the mutants scripts/mutation_money.sh found alive in daemon/webhooks.py: what
is recorded when fulfilment fails (outcome error, verified, detail, event id, type, provider,
time), when a body is refused, and what /metrics counts for each.
"""

from __future__ import annotations

import io
import logging
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from hero_onboarding.store import Store, deliveries
from hero_onboarding.store.deliveries import Delivery
from tests.conftest import OTHER_SECRET, SIGNING_SECRET, build_app, open_checkout
from tests.stripe_events import (
    body_of,
    checkout_event,
    dispute_event,
    new_id,
    refund_event,
    sign,
)
from tests.test_webhook_endpoint import send

NOW = 1_900_000_000


@pytest.fixture
async def timed(settings, store, webhooks, aiohttp_client) -> TestClient:
    """The public app with a clock that says NOW."""
    return await aiohttp_client(build_app(settings, store, webhooks, clock=lambda: NOW + 0.4))


async def recorded(store: Store) -> list[Delivery]:
    return await store.read(lambda conn: deliveries.page(conn))


async def metrics(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(await response.text())
        for sample in family.samples
    }


def webhooks_counted(figures: dict, event_type: str, outcome: str) -> float:
    key = ("hero_onboarding_webhooks_total", (("outcome", outcome), ("type", event_type)))
    return figures.get(key, 0)


async def test_a_fulfilment_that_fails_is_recorded_as_an_error_with_every_field(timed, store, user):
    """A trigger planted by raw SQL makes the refund's write fail (not busy: a bug)."""
    await store.write(
        lambda c: c.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON payment_reversals"
            f" BEGIN SELECT RAISE(ABORT, 'planted failure{'!' * 600}'); END"
        )
    )
    evt = refund_event("refund.created", payment_intent=new_id("pi"), amount=100)
    status, answer = await send(timed, evt)
    assert (status, answer) == (500, {"error": "internal error; the delivery will be retried"})
    [delivery] = await recorded(store)
    assert delivery == Delivery(
        received_at=NOW, provider="stripe", verified=True, outcome="error",
        detail=f"ConstraintError: planted failure{'!' * 600}"[:500],
        event_id=evt["id"], type="refund.created",
    )  # fmt: skip
    figures = await metrics(timed)
    assert webhooks_counted(figures, "refund.created", "error") == 1


async def test_a_credit_is_recorded_and_counted_as_the_webhooks(timed, store, user):
    evt = checkout_event(
        "checkout.session.completed", sid=user.sid, amount=1234, payment_intent=new_id("pi")
    )
    await open_checkout(store, user.sid, evt["data"]["object"]["id"], 1234)
    assert (await send(timed, evt))[0] == 200
    [delivery] = await recorded(store)
    assert delivery == Delivery(
        received_at=NOW, provider="stripe", verified=True, outcome="credited", detail="",
        event_id=evt["id"], type="checkout.session.completed",
    )  # fmt: skip
    figures = await metrics(timed)
    assert webhooks_counted(figures, "checkout.session.completed", "credited") == 1
    labels = (("currency", "usd"), ("source", "webhook"))
    credits = ("hero_onboarding_credits_applied_total", labels)
    units = ("hero_onboarding_credited_minor_units_total", labels)
    assert (figures[credits], figures[units]) == (1, 1234)
    [took] = [
        v
        for (name, _), v in figures.items()
        if name == "hero_onboarding_webhook_duration_seconds_sum"
    ]
    assert 0 < took < 30  # how long it took, not a clock reading


async def test_refused_bodies_are_recorded_with_their_status_and_counted(timed, store, user):
    evt = checkout_event(
        "checkout.session.completed", sid=user.sid, amount=10, payment_intent=new_id("pi")
    )
    assert (await send(timed, evt, OTHER_SECRET))[0] == 401
    assert (await send(timed, evt, OTHER_SECRET))[0] == 401
    body = "[1, 2]"
    response = await timed.post(
        "/webhooks/stripe",
        data=io.BytesIO(body.encode()),
        headers={"Stripe-Signature": sign(body, SIGNING_SECRET)},
    )
    assert response.status == 400
    assert await response.json() == {"error": "signed body is not a Stripe event object"}
    # Unverified deliveries are sampled: the second 401, within the same second, is counted only.
    newest, oldest = await recorded(store)
    assert oldest == Delivery(
        received_at=NOW, provider="stripe", verified=False, outcome="rejected",
        detail="401: signature does not match any configured signing secret",
    )  # fmt: skip
    assert newest == Delivery(
        received_at=NOW, provider="stripe", verified=True, outcome="rejected",
        detail="400: signed body is not a Stripe event object",
    )  # fmt: skip
    figures = await metrics(timed)
    assert webhooks_counted(figures, "unverified", "rejected") == 2
    assert webhooks_counted(figures, "other", "rejected") == 1


async def test_a_body_of_exactly_the_limit_is_read_and_one_more_byte_is_413(
    settings, store, webhooks, aiohttp_client
):
    evt: dict[str, Any] = checkout_event(
        "customer.created", sid=None, amount=1, payment_intent=None
    )
    body = body_of(evt)
    limit = len(body.encode())
    client = await aiohttp_client(
        build_app(
            replace(settings, webhook_max_bytes=limit),
            store,
            webhooks,
            clock=lambda: NOW,
        )
    )
    headers = {"Stripe-Signature": sign(body, SIGNING_SECRET)}
    exact = await client.post("/webhooks/stripe", data=io.BytesIO(body.encode()), headers=headers)
    assert exact.status == 200
    over = body + " "
    response = await client.post(
        "/webhooks/stripe",
        data=io.BytesIO(over.encode()),
        headers={"Stripe-Signature": sign(over, SIGNING_SECRET)},
    )
    assert response.status == 413
    newest = (await recorded(store))[0]
    assert newest == Delivery(
        received_at=NOW, provider="stripe", verified=False, outcome="rejected",
        detail=f"413: body larger than {limit} bytes",
    )  # fmt: skip


async def test_a_chunked_body_over_the_limit_is_recorded_when_it_came(timed, store):
    async def chunks():
        for _ in range(17):
            yield b"x" * 65536

    response = await timed.post(
        "/webhooks/stripe", data=chunks(), headers={"Stripe-Signature": "t=1,v1=00"}
    )
    assert response.status == 413
    [delivery] = await recorded(store)
    assert (delivery.received_at, delivery.outcome, delivery.verified) == (NOW, "rejected", False)
    assert delivery.detail.startswith("413: body larger than ")


async def test_each_delivery_is_logged_at_the_level_it_deserves(timed, store, user, caplog):
    evt = checkout_event(
        "checkout.session.completed", sid=user.sid, amount=1234, payment_intent=new_id("pi")
    )
    await open_checkout(store, user.sid, evt["data"]["object"]["id"], 1234)
    pi = evt["data"]["object"]["payment_intent"]
    dispute = dispute_event("charge.dispute.created", payment_intent=pi, amount=1234)
    unmatched = checkout_event(
        "checkout.session.completed", sid=user.sid, amount=5, payment_intent=new_id("pi")
    )
    caplog.set_level(logging.DEBUG, logger="hero_onboarding.daemon.webhooks")
    for delivered in (evt, evt, dispute, dispute, unmatched):
        assert (await send(timed, delivered))[0] == 200
    logged = [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "hero_onboarding.daemon.webhooks"
    ]
    session = unmatched["data"]["object"]["id"]
    assert logged == [
        (logging.INFO, f"webhook {evt['id']} checkout.session.completed: credited +1234 usd"
                       f" sid={user.sid}"),
        (logging.DEBUG, f"webhook {evt['id']} checkout.session.completed: duplicate"
                        " (payment already credited)"),
        (logging.WARNING, f"webhook {dispute['id']} charge.dispute.created: disputed -1234 usd"
                          f" sid={user.sid}"),
        (logging.WARNING, f"webhook {dispute['id']} charge.dispute.created: duplicate"
                          " (already applied)"),
        (logging.WARNING, f"webhook {unmatched['id']} checkout.session.completed: unmatched"
                          f" (checkout {session} was not opened by us)"),
    ]  # fmt: skip
