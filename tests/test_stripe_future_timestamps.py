"""A signature timestamp too far in the future is refused, like one too old.

The stripe SDK only checks the past: a header signed with `t` ten years ahead (a captured
secret, a broken signer clock) would verify for ten years.
"""

from __future__ import annotations

import time

import pytest

from hero_onboarding.payments.base import EventKind, InvalidSignature
from hero_onboarding.payments.stripe_provider import StripeWebhooks
from hero_onboarding.primitives import Secret
from tests.conftest import OTHER_SECRET, SIGNING_SECRET, balance_of
from tests.stripe_events import body_of, event, new_id, sign
from tests.test_webhook_endpoint import deliver, paid, recorded

TEN_YEARS_S = 10 * 365 * 24 * 3600


def parser_at(now: float, *secrets: str) -> StripeWebhooks:
    return StripeWebhooks([Secret(s) for s in secrets or (SIGNING_SECRET,)], clock=lambda: now)


def test_a_timestamp_at_the_tolerance_is_accepted_one_second_beyond_refused() -> None:
    now = float(int(time.time()))
    body = body_of(event("customer.created", {"id": new_id("cus")}))
    parser = parser_at(now)
    for ahead in (0, 299, 300):
        header = sign(body, SIGNING_SECRET, timestamp=int(now) + ahead)
        assert parser.parse_webhook(body.encode(), {"Stripe-Signature": header}).kind is (
            EventKind.IGNORED
        )
    for ahead in (301, TEN_YEARS_S):
        header = sign(body, SIGNING_SECRET, timestamp=int(now) + ahead)
        with pytest.raises(InvalidSignature, match="more than 300 s in the future"):
            parser.parse_webhook(body.encode(), {"Stripe-Signature": header})


def test_a_future_timestamp_that_matches_no_secret_is_still_a_mismatch() -> None:
    """Only a signature that verified says anything about its timestamp."""
    now = float(int(time.time()))
    body = body_of(event("customer.created", {"id": new_id("cus")}))
    header = sign(body, OTHER_SECRET, timestamp=int(now) + TEN_YEARS_S)
    with pytest.raises(InvalidSignature, match="does not match"):
        parser_at(now).parse_webhook(body.encode(), {"Stripe-Signature": header})
    two = parser_at(now, OTHER_SECRET, SIGNING_SECRET)
    future = sign(body, SIGNING_SECRET, timestamp=int(now) + 301)
    with pytest.raises(InvalidSignature, match="in the future"):
        two.parse_webhook(body.encode(), {"Stripe-Signature": future})


async def test_a_delivery_signed_ten_years_ahead_is_401_and_credits_nothing(
    client, store, user
) -> None:
    body = body_of(await paid(store, user, 1000))
    header = sign(body, SIGNING_SECRET, timestamp=int(time.time()) + TEN_YEARS_S)
    status, answer = await deliver(client, body, header)
    assert status == 401
    assert "signature timestamp is more than 300 s in the future" in answer["error"]
    assert await balance_of(store, user.sid) == 0
    [delivery] = await recorded(store)
    assert (delivery.outcome, delivery.verified) == ("rejected", False)
