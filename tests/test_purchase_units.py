"""The small parts of buying: reading amounts, reading sessions back, throttling, secrets."""

from __future__ import annotations

import asyncio

import pytest
import stripe

from hero_onboarding.config import ConfigError, ProviderName, load_settings
from hero_onboarding.control.secrets import SecretLookup, SecretsError, server_secrets
from hero_onboarding.daemon.keyed_locks import KeyedLocks
from hero_onboarding.daemon.recent import RecentAsks
from hero_onboarding.money import parse_major, parse_minor
from hero_onboarding.payments.base import EventKind
from hero_onboarding.payments.stripe_provider import _stripe_failure, session_event
from tests.conftest import SIGNING_SECRET


@pytest.mark.parametrize(
    ("typed", "currency", "minor"),
    [
        ("12.50", "usd", 1250),
        ("12.5", "usd", 1250),
        ("12", "usd", 1200),
        ("5.", "usd", 500),
        (".5", "usd", 50),
        ("1,000.00", "usd", 100000),
        ("1,000,000", "jpy", 1000000),
        ("$5", "usd", 500),
        (" 7 ", "usd", 700),
        ("500", "jpy", 500),
    ],
)
def test_amounts_people_type_are_read_in_whole_units(typed, currency, minor) -> None:
    assert parse_major(typed, currency) == minor


@pytest.mark.parametrize(
    ("typed", "currency", "says"),
    [
        ("12.505", "usd", "at most 2 decimals in USD"),
        ("5.5", "jpy", "no decimals in JPY"),
        ("-5", "usd", "must be a number"),
        ("+5", "usd", "must be a number"),
        ("1e3", "usd", "must be a number"),
        ("\uff15", "usd", "must be a number"),  # a full-width 5
        (".", "usd", "must be a number"),
        ("1.2.3", "usd", "must be a number"),
        ("", "usd", "must be a number"),
        ("9" * 13, "usd", "far too large"),
        ("5,50", "eur", "use a dot for decimals"),
        ("12,5", "usd", "use a dot for decimals"),
        ("1,2,3", "usd", "use a dot for decimals"),
        ("1000,000", "usd", "use a dot for decimals"),
        ("$5", "eur", "must be a number"),
    ],
)
def test_amounts_that_are_not_plain_numbers_are_refused(typed, currency, says) -> None:
    with pytest.raises(ValueError, match=says):
        parse_major(typed, currency)


@pytest.mark.parametrize("typed", ["-1", "1.0", "1e3", "", " ", "١٢", "0x10"])
def test_minor_units_are_digits_only(typed: str) -> None:
    with pytest.raises(ValueError, match="whole number of minor units"):
        parse_minor(typed)


def session(**fields: object) -> dict[str, object]:
    return {
        "object": "checkout.session",
        "id": "cs_test_1",
        "client_reference_id": "sid-1",
        "amount_total": 1000,
        "currency": "usd",
        "livemode": False,
        **fields,
    }


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"status": "complete", "payment_status": "paid", "payment_intent": "pi_1"}, "paid"),
        (
            {"status": "complete", "payment_status": "unpaid",
             "payment_intent": {"id": "pi_1", "status": "processing"}},
            "pending",
        ),
        (
            {"status": "complete", "payment_status": "unpaid",
             "payment_intent": {"id": "pi_1", "status": "requires_payment_method"}},
            "failed",
        ),
        ({"status": "expired", "payment_status": "unpaid", "payment_intent": None}, "expired"),
        ({"status": "weird"}, "ignored"),
    ],
)  # fmt: skip
def test_a_session_read_back_is_the_event_that_announces_it(fields, kind) -> None:
    event = session_event(session(**fields), source="retrieve")
    assert event is not None
    assert event.kind is EventKind(kind)
    assert event.event_id == "retrieve:cs_test_1"
    if event.kind is not EventKind.IGNORED:
        assert event.checkout_id == "cs_test_1"
    if event.kind is EventKind.PAID:
        assert (event.sid, event.amount, event.external_ref) == ("sid-1", 1000, "pi_1")


def test_an_open_session_has_nothing_to_report() -> None:
    assert session_event(session(status="open", payment_status="unpaid"), source="x") is None


def test_the_provider_is_asked_once_per_interval_per_checkout() -> None:
    asks = RecentAsks(2.0, limit=2)
    assert asks.may_ask("a", 100.0)
    assert not asks.may_ask("a", 101.9)
    assert asks.may_ask("b", 101.9)
    assert asks.may_ask("a", 102.0)
    assert asks.may_ask("c", 102.0)  # over the limit: "b", the oldest, is forgotten
    assert asks.may_ask("b", 102.1)


def test_stripe_needs_both_secrets_and_the_stub_neither() -> None:
    def secrets(env: dict[str, str], provider: str):
        return server_secrets(SecretLookup.from_env(env), provider=ProviderName(provider))

    both = {"STRIPE_WEBHOOK_SIGNING_KEY": SIGNING_SECRET, "STRIPE_SANDBOX_SECRET_KEY": "sk_x"}
    assert secrets(both, "stripe").stripe_secret_key is not None
    with pytest.raises(SecretsError, match="STRIPE_SANDBOX_SECRET_KEY is not set"):
        secrets({"STRIPE_WEBHOOK_SIGNING_KEY": SIGNING_SECRET}, "stripe")
    with pytest.raises(SecretsError, match="STRIPE_WEBHOOK_SIGNING_KEY is not set"):
        secrets({"STRIPE_SANDBOX_SECRET_KEY": "sk_x"}, "stripe")
    stub = secrets({}, "stub")
    assert (stub.webhook_signing_keys, stub.stripe_secret_key) == ((), None)
    with_hooks = secrets({"STRIPE_WEBHOOK_SIGNING_KEY": SIGNING_SECRET}, "stub")
    assert len(with_hooks.webhook_signing_keys) == 1


def test_the_stub_runs_only_in_sandbox_mode_and_checkouts_get_stripes_minimum_life() -> None:
    with pytest.raises(ConfigError, match="--provider=stub credits payments nobody made"):
        load_settings({"HOME": "/tmp/h"}, {"provider": "stub"})
    assert load_settings({"HOME": "/tmp/h"}, {"provider": "stub", "mode": "sandbox"})
    with pytest.raises(ConfigError, match="--checkout-ttl-s='1800': must be between 2100"):
        load_settings({"HOME": "/tmp/h"}, {"checkout_ttl_s": "1800"})


def test_a_stripe_refusal_is_logged_with_its_identifiers_never_its_message() -> None:
    refused = stripe.InvalidRequestError(
        "Invalid API Key provided: sk_test_****ZZZZ", "expires_at",
        code="parameter_invalid", http_status=400, headers={"request-id": "req_123"},
    )  # fmt: skip
    text = _stripe_failure(refused)
    assert text == (
        "Stripe refused or did not answer: InvalidRequestError "
        "(HTTP 400, code parameter_invalid, param expires_at, request req_123)"
    )
    assert "ZZZZ" not in _stripe_failure(
        stripe.AuthenticationError("sk_test_****ZZZZ", http_status=401)
    )


async def test_keyed_locks_serialise_one_key_and_forget_it_when_free() -> None:
    locks = KeyedLocks()
    order: list[str] = []
    entered = asyncio.Event()

    async def first() -> None:
        async with locks.holding("sid-1"):
            entered.set()
            order.append("first in")
            await asyncio.sleep(0)  # let the second one queue up on the lock
            order.append("first out")

    async def second() -> None:
        await entered.wait()
        async with locks.holding("sid-1"):
            order.append("second")

    async def other_user() -> None:
        await entered.wait()
        async with locks.holding("sid-2"):
            order.append("other")

    await asyncio.gather(first(), second(), other_user())
    assert order.index("second") > order.index("first out")
    assert len(locks) == 0
