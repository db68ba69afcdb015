"""StripeWebhooks.parse_webhook: verification with the SDK, normalisation to ProviderEvent."""

from __future__ import annotations

import time

import pytest

from hero_onboarding.payments.base import EventKind, InvalidPayload, InvalidSignature
from hero_onboarding.payments.stripe_provider import StripeWebhooks, normalise_event
from hero_onboarding.primitives import Secret
from tests.conftest import OTHER_SECRET, SIGNING_SECRET
from tests.stripe_events import body_of, charge_refunded, checkout_event, event, new_id, sign


def parse(evt: dict, *, secrets=(SIGNING_SECRET,), signed_with=(SIGNING_SECRET,), **kwargs):
    body = body_of(evt)
    parser = StripeWebhooks([Secret(s) for s in secrets], **kwargs)
    return parser.parse_webhook(body.encode(), {"Stripe-Signature": sign(body, *signed_with)})


def test_paid_session_normalises_to_a_credit_keyed_on_the_payment_intent():
    evt = checkout_event("checkout.session.completed", sid="s1", amount=1234, payment_intent="pi_9")
    got = parse(evt)
    assert got.kind is EventKind.PAID
    assert (got.sid, got.amount, got.currency, got.external_ref) == ("s1", 1234, "usd", "pi_9")
    assert (got.event_id, got.raw_type, got.provider) == (
        evt["id"],
        "checkout.session.completed",
        "stripe",
    )
    assert got.checkout_id == evt["data"]["object"]["id"]
    assert got.livemode is False


def test_expanded_payment_intent_and_metadata_sid_are_understood():
    evt = checkout_event("checkout.session.completed", sid=None, amount=500, payment_intent=None)
    session = evt["data"]["object"]
    session["payment_intent"] = {"id": "pi_expanded", "object": "payment_intent"}
    session["metadata"] = {"sid": "from-metadata"}
    got = normalise_event(evt)
    assert (got.external_ref, got.sid) == ("pi_expanded", "from-metadata")


def test_currency_is_lowercased():
    evt = checkout_event(
        "checkout.session.completed", sid="s", amount=500, payment_intent="pi_1", currency="USD"
    )
    assert normalise_event(evt).currency == "usd"


@pytest.mark.parametrize(
    ("payment_status", "kind"),
    [
        ("paid", EventKind.PAID),
        ("unpaid", EventKind.PENDING),
        ("no_payment_required", EventKind.IGNORED),
    ],
)
def test_completed_session_kind_follows_payment_status(payment_status, kind):
    evt = checkout_event(
        "checkout.session.completed",
        sid="s",
        amount=500,
        payment_intent="pi_1",
        payment_status=payment_status,
    )
    assert normalise_event(evt).kind is kind


def test_refund_carries_the_running_total_for_the_payment():
    got = normalise_event(charge_refunded(payment_intent="pi_r", amount=1000, amount_refunded=300))
    assert (got.kind, got.external_ref, got.amount) == (EventKind.REFUNDED, "pi_r", 300)


def test_amount_total_of_wrong_type_is_refused():
    for bad in (None, "1000", 10.5, True, 0, -5):
        evt = checkout_event(
            "checkout.session.completed", sid="s", amount=500, payment_intent="pi_1"
        )
        evt["data"]["object"]["amount_total"] = bad
        with pytest.raises(InvalidPayload):
            normalise_event(evt)


def test_livemode_mismatch_is_ignored_not_credited():
    evt = checkout_event("checkout.session.completed", sid="s", amount=500, payment_intent="pi_1")
    got = parse(evt, livemode=True)
    assert got.kind is EventKind.IGNORED
    assert "livemode" in got.note


def test_rotation_accepts_a_match_on_any_secret_and_any_v1_entry():
    evt = event("customer.created", {"id": new_id("cus")})
    assert parse(evt, secrets=(OTHER_SECRET, SIGNING_SECRET)).kind is EventKind.IGNORED
    assert parse(evt, signed_with=(OTHER_SECRET, SIGNING_SECRET)).kind is EventKind.IGNORED
    with pytest.raises(InvalidSignature, match="does not match"):
        parse(evt, signed_with=(OTHER_SECRET,))


def test_stale_wins_over_mismatch_when_a_secret_matched():
    body = body_of(event("customer.created", {"id": new_id("cus")}))
    parser = StripeWebhooks([Secret(OTHER_SECRET), Secret(SIGNING_SECRET)])
    old = sign(body, SIGNING_SECRET, timestamp=int(time.time()) - 1000)
    with pytest.raises(InvalidSignature, match="older than 300 s"):
        parser.parse_webhook(body.encode(), {"Stripe-Signature": old})


def test_error_messages_never_contain_a_secret():
    body = body_of(event("customer.created", {"id": new_id("cus")}))
    parser = StripeWebhooks([Secret(SIGNING_SECRET)])
    for header in ("", "t=1", "v1=abc", sign(body, OTHER_SECRET), "t=x,v1=" + SIGNING_SECRET):
        with pytest.raises(InvalidSignature) as caught:
            parser.parse_webhook(body.encode(), {"Stripe-Signature": header})
        assert SIGNING_SECRET not in str(caught.value)
        assert "whsec_" not in str(caught.value)


def test_zero_tolerance_and_no_secret_are_refused():
    with pytest.raises(ValueError, match="tolerance"):
        StripeWebhooks([Secret(SIGNING_SECRET)], tolerance_s=0)
    with pytest.raises(ValueError, match="secret"):
        StripeWebhooks([])


def test_secret_repr_hides_the_value():
    secret = Secret(SIGNING_SECRET)
    assert SIGNING_SECRET not in repr(secret)
    assert SIGNING_SECRET not in str(secret)
    assert SIGNING_SECRET not in repr([secret])
    assert secret.reveal() == SIGNING_SECRET


def test_a_non_ascii_signature_header_is_invalid_not_a_crash():
    body = body_of(event("customer.created", {"id": new_id("cus")}))
    parser = StripeWebhooks([Secret(SIGNING_SECRET)])
    with pytest.raises(InvalidSignature, match="malformed"):
        parser.parse_webhook(
            body.encode(), {"Stripe-Signature": f"t={int(time.time())},v1=\u00e9\u00e9"}
        )


@pytest.mark.parametrize(
    "field",
    ["client_reference_id", "id", "currency", "payment_intent"],
)
def test_strings_no_database_could_store_are_refused_or_dropped(field):
    evt = checkout_event("checkout.session.completed", sid="s", amount=500, payment_intent="pi_1")
    evt["data"]["object"][field] = "\ud800"  # a lone surrogate: valid JSON, invalid text
    try:
        got = normalise_event(evt)
    except InvalidPayload:
        return
    for value in (got.sid, got.checkout_id, got.currency, got.external_ref, got.event_id):
        assert value is None or value.isascii()


@pytest.mark.parametrize("amount", [10**12 + 1, 2**62, 2**64])
def test_amounts_beyond_any_real_payment_are_refused(amount):
    evt = checkout_event(
        "checkout.session.completed", sid="s", amount=amount, payment_intent="pi_1"
    )
    with pytest.raises(InvalidPayload, match="amount_total"):
        normalise_event(evt)
    refund = charge_refunded(payment_intent="pi_1", amount=1000, amount_refunded=amount)
    with pytest.raises(InvalidPayload, match="amount_refunded"):
        normalise_event(refund)
