"""Order never matters: every permutation of one payment's events ends in the balance Stripe's
final state implies, whether the webhook or reconciliation delivers each, and a sampled set of
several payments delivered at once over real HTTP ends the same way.

The scenario, one card payment of 10.00: the session completes (and, as Stripe may also send,
its async_payment_succeeded), a refund of 3.00 (charge.refunded, total 3.00), a second refund
of 7.00 (total 10.00) that then fails (refund.failed), and a dispute of the whole payment that
opens and then is won or lost. Stripe's final state: paid 10.00, refunded 3.00 (the failed
refund never counts), the dispute holding what is still credited when lost, nothing when won.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import apsw
import pytest

from hero_onboarding.billing import apply_event
from hero_onboarding.payments.base import ProviderEvent
from hero_onboarding.payments.stripe_provider import normalise_event, session_event
from hero_onboarding.store import Store, ledger
from tests.conftest import balance_of, open_checkout
from tests.seeding import checkout, insert_checkouts
from tests.stripe_events import (
    charge_refunded,
    checkout_event,
    dispute_event,
    new_id,
    refund_event,
)
from tests.test_webhook_endpoint import send

PAID, FIRST_REFUND, SECOND_REFUND, DISPUTED = 1000, 300, 700, 1000
NAMES = (
    "completed",
    "async_payment_succeeded",
    "refunded partial",
    "refunded full",
    "refund failed",
    "dispute created",
    "dispute closed",
)


def stripe_says(ending: str) -> int:
    """The balance Stripe's final state implies, worked out from that state alone."""
    credited = PAID - FIRST_REFUND  # the second refund failed: it never counts
    held = min(DISPUTED, credited) if ending == "lost" else 0
    return credited - held


@dataclass
class Payment:
    session_id: str
    events: dict[str, dict[str, Any]]


def one_payment(sid: str, ending: str) -> Payment:
    pi, session_id = new_id("pi"), "cs_test_" + new_id("x")[2:]
    refund_id, dispute_id = new_id("re"), new_id("dp")

    def session(event_type: str) -> dict[str, Any]:
        return checkout_event(
            event_type, sid=sid, amount=PAID, payment_intent=pi, session_id=session_id
        )

    def disputed(event_type: str, status: str) -> dict[str, Any]:
        return dispute_event(
            event_type, payment_intent=pi, amount=DISPUTED, status=status, dispute_id=dispute_id
        )

    events = {
        "completed": session("checkout.session.completed"),
        "async_payment_succeeded": session("checkout.session.async_payment_succeeded"),
        "refunded partial": charge_refunded(
            payment_intent=pi, amount=PAID, amount_refunded=FIRST_REFUND
        ),
        "refunded full": charge_refunded(
            payment_intent=pi, amount=PAID, amount_refunded=FIRST_REFUND + SECOND_REFUND
        ),
        "refund failed": refund_event(
            "refund.failed",
            payment_intent=pi,
            amount=SECOND_REFUND,
            status="failed",
            refund_id=refund_id,
        ),
        "dispute created": disputed("charge.dispute.created", "needs_response"),
        "dispute closed": disputed("charge.dispute.closed", ending),
    }
    return Payment(session_id, events)


def many_payments(sid: str, ending: str, count: int) -> list[Payment]:
    """`count` payments like one_payment's, each with ids of its own (copied from one as text:
    35,280 deep copies of Stripe's example objects would take most of the test's time)."""
    template = one_payment(sid, ending)
    text = json.dumps(template.events)
    ids = {
        template.session_id,
        *(evt["data"]["object"]["id"] for evt in template.events.values()),
        *(evt["id"] for evt in template.events.values()),
        template.events["completed"]["data"]["object"]["payment_intent"],
    }
    payments = []
    for n in range(count):
        copied = text
        for old in ids:
            copied = copied.replace(old, f"{old}{n:04d}")
        payments.append(Payment(f"{template.session_id}{n:04d}", json.loads(copied)))
    return payments


async def open_checkouts(store: Store, sid: str, session_ids: list[str]) -> None:
    """Many checkouts as the service opens them, in one transaction (one fsync, not 5,040)."""

    opened = [checkout(sid, session_id, PAID) for session_id in session_ids]
    await store.write(partial(insert_checkouts, opened=opened))


def read(evt: dict[str, Any], via: str) -> ProviderEvent:
    """As the webhook reads it, or as reconciliation does (sessions listed, events listed)."""
    if via == "webhook":
        return normalise_event(evt)
    obj = evt["data"]["object"]
    if obj["object"] == "checkout.session":
        found = session_event(obj, source="reconcile")
        assert found is not None
        return found
    return normalise_event({**evt, "id": f"reconcile:{evt['id']}"})


async def nets(store: Store) -> dict[str, int]:
    """What the ledger holds for each payment: its purchase and every entry hanging off it."""
    rows: list[tuple[Any, ...]] = await store.read(
        lambda conn: conn.execute(
            "SELECT checkout_id, SUM(amount) FROM payment_events GROUP BY checkout_id"
        ).fetchall()
    )
    return dict(rows)


@pytest.mark.slow  # several seconds even alone
@pytest.mark.parametrize(("ending", "sampled"), [("lost", None), ("won", 720)])
async def test_every_order_of_one_payments_events_ends_where_stripe_does(
    store, user, ending, sampled
):
    """All 5,040 orders with the dispute lost; a seeded seventh of them with it won (the
    orders that matter for a win are the same ones, and the suite has a time budget)."""
    rng = random.Random(f"order-{ending}")
    orders = list(itertools.permutations(NAMES))
    assert len(orders) == 5040
    if sampled is not None:
        orders = rng.sample(orders, sampled)
    payments = many_payments(user.sid, ending, len(orders))
    await open_checkouts(store, user.sid, [p.session_id for p in payments])

    reports = [
        [read(payment.events[name], rng.choice(("webhook", "reconcile"))) for name in order]
        for payment, order in zip(payments, orders, strict=True)
    ]

    def play(conn: apsw.Connection, chunk: list[list[ProviderEvent]]) -> None:
        # Each report through the same apply_event the webhook's transaction runs; a chunk of
        # payments shares one transaction only to keep 35,280 reports from taking minutes.
        for sequence in chunk:
            for report in sequence:
                apply_event(conn, report, now=now)

    now = int(time.time())
    for start in range(0, len(reports), 630):
        await store.write(partial(play, chunk=reports[start : start + 630]))

    expected = stripe_says(ending)
    held = await nets(store)
    wrong = [
        (order, held.get(p.session_id))
        for order, p in zip(orders, payments, strict=True)
        if held.get(p.session_id) != expected
    ]
    assert wrong == [], f"{len(wrong)} orders end elsewhere than {expected}, e.g. {wrong[:3]}"
    assert await balance_of(store, user.sid) == expected * len(orders)
    assert await store.read(ledger.verify_ledger) == []


async def test_several_payments_at_once_over_http_in_sampled_orders(client, store, user):
    """Twenty payments, each event delivered twice, all interleaved and sent concurrently."""
    rng = random.Random(13)
    payments = [one_payment(user.sid, rng.choice(("won", "lost"))) for _ in range(20)]
    deliveries: list[dict[str, Any]] = []
    for payment in payments:
        await open_checkout(store, user.sid, payment.session_id, PAID)
        deliveries += [*payment.events.values()] * 2
    rng.shuffle(deliveries)
    answers = await asyncio.gather(*(send(client, evt) for evt in deliveries))
    assert {status for status, _ in answers} == {200}
    held = await nets(store)
    for payment in payments:
        ending = payment.events["dispute closed"]["data"]["object"]["status"]
        assert held[payment.session_id] == stripe_says(ending)
    total = sum(
        stripe_says(p.events["dispute closed"]["data"]["object"]["status"]) for p in payments
    )
    assert await balance_of(store, user.sid) == total
