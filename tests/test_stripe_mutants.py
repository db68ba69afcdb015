"""Stripe's reports read field by field, and the SDK client as it is configured.

Written to kill the mutants scripts/mutation_money.sh found alive: each test states the whole
ProviderEvent a report must become (not one field of it), the bounds of what is accepted, and
what the client sends to Stripe (version, retries, timeout, pagination, the time filter).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp import web

from hero_onboarding.payments.base import (
    MAX_AMOUNT,
    CheckoutRequest,
    EventKind,
    InvalidPayload,
    ProviderError,
    ProviderEvent,
)
from hero_onboarding.payments.stripe_api import API_VERSION
from hero_onboarding.payments.stripe_provider import (
    StripeCheckouts,
    StripeWebhooks,
    normalise_event,
    session_event,
)
from hero_onboarding.primitives import Secret
from tests.conftest import SIGNING_SECRET, sandbox_config, start_sandbox
from tests.sandbox_kit import API_KEY, Harness
from tests.stripe_events import (
    body_of,
    charge,
    charge_refunded,
    checkout_event,
    checkout_session,
    dispute_event,
    event,
    refund,
    refund_event,
    sign,
)


def stripe_event(evt: dict[str, Any], **fields: Any) -> ProviderEvent:
    """The ProviderEvent `evt` must become: its id and type, and `fields`."""
    return ProviderEvent(
        provider="stripe", event_id=evt["id"], raw_type=evt["type"], livemode=False, **fields
    )


# -- checkout sessions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "payment_status", "kind"),
    [
        ("checkout.session.completed", "paid", EventKind.PAID),
        ("checkout.session.completed", "unpaid", EventKind.PENDING),
        ("checkout.session.async_payment_succeeded", "paid", EventKind.PAID),
        ("checkout.session.async_payment_failed", "unpaid", EventKind.FAILED),
        ("checkout.session.expired", "unpaid", EventKind.EXPIRED),
    ],
)
def test_a_session_event_becomes_exactly_this(event_type, payment_status, kind):
    evt = checkout_event(
        event_type, sid="s1", amount=1500, payment_intent="pi_7", payment_status=payment_status
    )
    session = evt["data"]["object"]
    assert normalise_event(evt) == stripe_event(
        evt, kind=kind, checkout_id=session["id"], external_ref="pi_7", amount=1500,
        currency="usd", sid="s1",
    )  # fmt: skip


def test_a_completed_session_neither_paid_nor_unpaid_is_ignored_with_its_status():
    evt = checkout_event(
        "checkout.session.completed",
        sid="s1",
        amount=1500,
        payment_intent="pi_7",
        payment_status="no_payment_required",
    )
    assert normalise_event(evt) == stripe_event(
        evt, kind=EventKind.IGNORED, note="payment_status 'no_payment_required': nothing to credit"
    )


def test_references_that_disagree_are_both_reported():
    evt = checkout_event("checkout.session.completed", sid="s1", amount=10, payment_intent="pi_1")
    evt["data"]["object"]["metadata"] = {"sid": "s2"}
    got = normalise_event(evt)
    assert (got.sid, got.conflicting_sid) == ("s1", "s2")
    evt["data"]["object"]["metadata"] = "not a mapping"
    assert (normalise_event(evt).sid, normalise_event(evt).conflicting_sid) == ("s1", None)
    evt["data"]["object"].update(client_reference_id=None, metadata={"sid": "s2"})
    assert (normalise_event(evt).sid, normalise_event(evt).conflicting_sid) == ("s2", None)


def test_a_paid_session_without_payment_intent_is_keyed_on_the_session():
    evt = checkout_event("checkout.session.completed", sid="s1", amount=10, payment_intent=None)
    assert normalise_event(evt).external_ref == evt["data"]["object"]["id"]


@pytest.mark.parametrize("currency", [None, "", "\u00e9ur"])
def test_a_paid_session_without_a_currency_is_refused(currency):
    evt = checkout_event("checkout.session.completed", sid="s1", amount=10, payment_intent="pi_1")
    evt["data"]["object"]["currency"] = currency
    with pytest.raises(InvalidPayload, match=r"^checkout\.session\.completed without a valid"):
        normalise_event(evt)


def test_a_pending_session_needs_no_amount():
    evt = checkout_event(
        "checkout.session.completed", sid="s1", amount=10, payment_intent="pi_1",
        payment_status="unpaid",
    )  # fmt: skip
    evt["data"]["object"].update(amount_total=None, currency=None)
    got = normalise_event(evt)
    assert (got.kind, got.amount, got.currency) == (EventKind.PENDING, None, None)


def test_a_session_without_id_is_refused():
    evt = checkout_event("checkout.session.expired", sid="s1", amount=10, payment_intent=None)
    evt["data"]["object"]["id"] = None
    with pytest.raises(InvalidPayload, match=r"^checkout.session.expired without a session id$"):
        normalise_event(evt)


@pytest.mark.parametrize(
    ("amount", "accepted"), [(0, True), (MAX_AMOUNT, True), (MAX_AMOUNT + 1, False), (-1, False)]
)
def test_amounts_are_accepted_from_zero_to_max_amount_inclusive(amount, accepted):
    evt = charge_refunded(payment_intent="pi_1", amount=1000, amount_refunded=amount)
    if accepted:
        assert normalise_event(evt).amount == amount
    else:
        with pytest.raises(InvalidPayload):
            normalise_event(evt)
    paid = checkout_event("checkout.session.completed", sid="s", amount=1, payment_intent="pi_1")
    paid["data"]["object"]["amount_total"] = amount
    if accepted and amount:
        assert normalise_event(paid).amount == amount
    else:  # nothing paid is nothing to credit
        with pytest.raises(InvalidPayload):
            normalise_event(paid)


def test_a_boolean_is_not_an_amount():
    evt = charge_refunded(payment_intent="pi_1", amount=1000, amount_refunded=0)
    evt["data"]["object"]["amount_refunded"] = True
    with pytest.raises(InvalidPayload):
        normalise_event(evt)


# -- refunds and disputes --------------------------------------------------------------------


def test_a_charge_refunded_becomes_exactly_this_with_its_listed_refunds():
    listed = [
        refund(payment_intent="pi_c", amount=300, status="succeeded", refund_id="re_ok"),
        refund(payment_intent="pi_c", amount=200, status="canceled", refund_id="re_gone"),
        refund(payment_intent="pi_c", amount=100, status="mystery", refund_id="re_odd"),
    ]
    evt = event(
        "charge.refunded",
        charge(payment_intent="pi_c", amount=1000, amount_refunded=300, refunds=listed,
               currency="USD"),
    )  # fmt: skip
    part = {"provider": "stripe", "event_id": evt["id"], "raw_type": "charge.refunded",
            "livemode": False, "external_ref": "pi_c", "currency": "usd"}  # fmt: skip
    assert normalise_event(evt) == stripe_event(
        evt, kind=EventKind.REFUNDED, external_ref="pi_c", amount=300, currency="usd",
        status="succeeded",
        parts=(
            ProviderEvent(**part, kind=EventKind.REFUNDED, amount=300, reversal_id="re_ok",
                          status="succeeded"),
            ProviderEvent(**part, kind=EventKind.REFUND_FAILED, amount=200,
                          reversal_id="re_gone", status="canceled"),
        ),
    )  # fmt: skip


def test_a_charge_without_payment_intent_is_keyed_on_the_charge():
    obj = charge(payment_intent="pi_x", amount=1000, amount_refunded=10, charge_id="ch_only")
    obj["payment_intent"] = None
    assert normalise_event(event("charge.refunded", obj)).external_ref == "ch_only"
    obj["payment_intent"] = {"id": "pi_expanded", "object": "payment_intent"}
    assert normalise_event(event("charge.refunded", obj)).external_ref == "pi_expanded"
    obj.update(payment_intent=None, id=None)
    with pytest.raises(InvalidPayload, match=r"^charge\.refunded without payment"):
        normalise_event(event("charge.refunded", obj))


@pytest.mark.parametrize("missing", ["currency", "amount_refunded"])
def test_a_charge_refunded_without_its_figures_is_refused(missing):
    evt = charge_refunded(payment_intent="pi_1", amount=1000, amount_refunded=10)
    evt["data"]["object"][missing] = None
    with pytest.raises(InvalidPayload, match=r"^charge\.refunded without payment"):
        normalise_event(evt)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("pending", EventKind.REFUNDED),
        ("requires_action", EventKind.REFUNDED),
        ("succeeded", EventKind.REFUNDED),
        ("failed", EventKind.REFUND_FAILED),
        ("canceled", EventKind.REFUND_FAILED),
    ],
)
def test_a_refund_event_becomes_exactly_this(status, kind):
    evt = refund_event(
        "refund.updated", payment_intent="pi_r", amount=250, status=status, refund_id="re_1",
        currency="EUR",
    )  # fmt: skip
    assert normalise_event(evt) == stripe_event(
        evt, kind=kind, external_ref="pi_r", amount=250, currency="eur", reversal_id="re_1",
        status=status,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("warning_needs_response", EventKind.DISPUTED),
        ("warning_under_review", EventKind.DISPUTED),
        ("needs_response", EventKind.DISPUTED),
        ("under_review", EventKind.DISPUTED),
        ("lost", EventKind.DISPUTED),
        ("won", EventKind.DISPUTE_WON),
        ("warning_closed", EventKind.DISPUTE_WON),
        ("prevented", EventKind.DISPUTE_WON),
    ],
)
def test_a_dispute_event_becomes_exactly_this(status, kind):
    evt = dispute_event(
        "charge.dispute.updated", payment_intent="pi_d", amount=900, status=status,
        dispute_id="dp_1",
    )  # fmt: skip
    assert normalise_event(evt) == stripe_event(
        evt, kind=kind, external_ref="pi_d", amount=900, currency="usd", reversal_id="dp_1",
        status=status,
    )  # fmt: skip


def test_a_reversal_of_unknown_status_is_unknown_with_why():
    evt = refund_event("refund.updated", payment_intent="pi_r", amount=5, status="x" * 50,
                       refund_id="re_9")  # fmt: skip
    assert normalise_event(evt) == stripe_event(
        evt, kind=EventKind.UNKNOWN, external_ref="pi_r", amount=5, currency="usd",
        reversal_id="re_9", note=f"refund re_9 has unknown status {'x' * 40!r}",
    )  # fmt: skip
    evt["data"]["object"]["status"] = 7
    assert normalise_event(evt).note == "refund re_9 has unknown status '7'"


def test_a_refund_without_payment_intent_is_keyed_on_its_charge():
    evt = refund_event("refund.created", payment_intent=None, amount=5, charge_id="ch_9")
    assert normalise_event(evt).external_ref == "ch_9"


@pytest.mark.parametrize("missing", ["id", "currency", "amount", "charge"])
def test_a_reversal_without_its_figures_is_refused(missing):
    evt = dispute_event("charge.dispute.created", payment_intent=None, amount=5)
    evt["data"]["object"][missing] = None
    with pytest.raises(
        InvalidPayload,
        match=r"^charge.dispute.created: a dispute without id, payment, amount or currency$",
    ):
        normalise_event(evt)


def test_a_listed_refund_that_is_not_an_object_is_refused():
    evt = event(
        "charge.refunded",
        charge(
            payment_intent="pi_1",
            amount=10,
            amount_refunded=1,
            refunds=[7],  # type: ignore[list-item]  # not an object, on purpose
        ),
    )
    with pytest.raises(InvalidPayload, match=r"^charge.refunded: a refund that is not an object$"):
        normalise_event(evt)


# -- events that are not for us, or cannot be read -------------------------------------------


def test_an_unhandled_type_is_ignored_and_livemode_read_only_from_a_boolean():
    evt = event("customer.created", {"id": "cus_1"})
    assert normalise_event(evt) == stripe_event(
        evt, kind=EventKind.IGNORED, note="event type not handled"
    )
    evt["livemode"] = "yes"
    assert normalise_event(evt).livemode is None
    evt["livemode"] = True
    assert normalise_event(evt).livemode is True


def test_a_thin_event_without_id_or_type_still_has_names():
    got = normalise_event({"object": "v2.core.event"})
    assert (got.kind, got.event_id, got.raw_type) == (
        EventKind.IGNORED,
        "v2.core.event",
        "v2.core.event",
    )
    named = normalise_event({"object": "v2.core.event", "id": "evt_2", "type": "v1.x"})
    assert (named.provider, named.event_id, named.raw_type) == ("stripe", "evt_2", "v1.x")
    assert named.note == "a thin (v2) event: this service reads snapshot events only"


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"object": "customer"},
        {"object": "event", "type": "x", "data": {"object": {}}},
        {"object": "event", "id": "evt_1", "data": {"object": {}}},
        {"object": "event", "id": "evt_1", "type": "x", "data": []},
        {"object": "event", "id": "evt_1", "type": "x", "data": {"object": "cs_1"}},
    ],
)
def test_what_is_not_a_readable_event_is_refused(body):
    with pytest.raises(InvalidPayload):
        normalise_event(body)


def _signed(evt: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = body_of(evt)
    return body.encode(), {"Stripe-Signature": sign(body, SIGNING_SECRET)}


def test_an_ignored_event_drops_the_reports_it_carried():
    listed = [refund(payment_intent="pi_1", amount=3)]
    evt = event(
        "charge.refunded",
        charge(payment_intent="pi_1", amount=10, amount_refunded=3, refunds=listed),
        livemode=True,
    )
    got = StripeWebhooks([Secret(SIGNING_SECRET)], livemode=False).parse_webhook(*_signed(evt))
    assert (got.kind, got.parts, got.note) == (
        EventKind.IGNORED,
        (),
        "livemode=True; this service takes False",
    )
    evt["livemode"], evt["account"] = False, "acct_" + "9" * 70
    got = StripeWebhooks([Secret(SIGNING_SECRET)]).parse_webhook(*_signed(evt))
    assert (got.kind, got.parts) == (EventKind.IGNORED, ())
    assert got.note == f"event of connected account {evt['account'][:60]}"


def test_a_signed_body_that_is_not_json_is_invalid_payload():
    body = "not json {"
    parser = StripeWebhooks([Secret(SIGNING_SECRET)])
    with pytest.raises(InvalidPayload, match=r"^signed body is not JSON we can read$"):
        parser.parse_webhook(body.encode(), {"Stripe-Signature": sign(body, SIGNING_SECRET)})


# -- sessions read back from the API ---------------------------------------------------------


def _session(**fields: Any) -> dict[str, Any]:
    session = checkout_session(sid="s1", amount=700, payment_intent="pi_s")
    session.update(fields)
    return session


def test_an_open_session_is_nothing_yet():
    assert session_event(_session(status="open", payment_status="unpaid"), source="x") is None


@pytest.mark.parametrize(
    ("fields", "kind", "raw_type"),
    [
        ({}, EventKind.PAID, "checkout.session.completed"),
        ({"payment_status": "unpaid"}, EventKind.PENDING, "checkout.session.completed"),
        (
            {"payment_status": "unpaid", "payment_intent": {"id": "pi_s", "status": "processing"}},
            EventKind.PENDING,
            "checkout.session.completed",
        ),
        (
            {"payment_status": "unpaid",
             "payment_intent": {"id": "pi_s", "status": "requires_payment_method"}},
            EventKind.FAILED,
            "checkout.session.async_payment_failed",
        ),
        (
            {"payment_status": "unpaid", "payment_intent": {"id": "pi_s", "status": "canceled"}},
            EventKind.FAILED,
            "checkout.session.async_payment_failed",
        ),
        (
            {"payment_status": "paid", "payment_intent": {"id": "pi_s", "status": "canceled"}},
            EventKind.PAID,
            "checkout.session.completed",
        ),
        ({"status": "expired", "payment_status": "unpaid"}, EventKind.EXPIRED,
         "checkout.session.expired"),
    ],
)  # fmt: skip
def test_a_session_read_back_is_read_as_its_webhook(fields, kind, raw_type):
    session = _session(livemode=False, **fields)
    got = session_event(session, source="reconcile")
    assert got == ProviderEvent(
        provider="stripe", kind=kind, event_id=f"reconcile:{session['id']}", raw_type=raw_type,
        checkout_id=session["id"], external_ref="pi_s", amount=700, currency="usd", sid="s1",
        livemode=False,
    )  # fmt: skip


def test_a_session_in_a_state_stripe_never_reported_is_ignored_by_its_status():
    session = _session(status="y" * 50, livemode=True)
    got = session_event(session, source="retrieve")
    assert got == ProviderEvent(
        provider="stripe", kind=EventKind.IGNORED, event_id=f"retrieve:{session['id']}",
        raw_type=f"checkout.session.status.{'y' * 40}", livemode=True,
        note="event type not handled",
    )  # fmt: skip


def test_a_session_that_cannot_be_read_is_reported_not_fatal():
    session = _session(amount_total=None, livemode=True)
    got = session_event(session, source="reconcile")
    assert got == ProviderEvent(
        provider="stripe", kind=EventKind.IGNORED, event_id=f"reconcile:{session['id']}",
        raw_type="checkout.session.completed", checkout_id=session["id"],
        note="cannot be read: checkout.session.completed without a valid amount_total and "
        "currency",
    )  # fmt: skip


def test_an_unreadable_session_with_an_odd_id_gives_no_checkout_id():
    session = _session(id=5, amount_total=None)
    got = session_event(session, source="reconcile")
    assert got is not None
    assert (got.kind, got.checkout_id, got.event_id) == (
        EventKind.IGNORED,
        None,
        "reconcile:5",
    )
    assert got.note.startswith("cannot be read: ")


# -- the SDK client ---------------------------------------------------------------------------


class FakeStripe:
    """A tiny HTTP server in Stripe's shape: answers `statuses` first (500s), then `session`,
    and keeps every request's path, query and headers."""

    def __init__(self, session: dict[str, Any], statuses: list[int], stall_s: float = 0) -> None:
        self.session, self.statuses, self.stall_s = session, statuses, stall_s
        self.requests: list[web.Request] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        if self.stall_s:
            await asyncio.sleep(self.stall_s)  # a Stripe that stalls: the client's timeout acts
        if self.statuses:
            return web.json_response(
                {"error": {"type": "api_error", "message": "boom"}}, status=self.statuses.pop(0)
            )
        return web.json_response(self.session)


async def fake_stripe(aiohttp_server, fake: FakeStripe) -> str:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def test_the_client_retries_a_500_pins_the_version_and_expands_the_intent(aiohttp_server):
    session = _session(
        object="checkout.session", livemode=False,
        payment_intent={"id": "pi_s", "object": "payment_intent", "status": "succeeded"},
    )  # fmt: skip
    fake = FakeStripe(session, [500])
    client = StripeCheckouts(Secret(API_KEY), api_base=await fake_stripe(aiohttp_server, fake))
    try:
        got = await client.retrieve_checkout(session["id"])
    finally:
        await client.close()
    assert got == ProviderEvent(
        provider="stripe", kind=EventKind.PAID, event_id=f"retrieve:{session['id']}",
        raw_type="checkout.session.completed", checkout_id=session["id"], external_ref="pi_s",
        amount=700, currency="usd", sid="s1", livemode=False,
    )  # fmt: skip
    assert len(fake.requests) == 2  # the 500, then the retry that worked
    last = fake.requests[-1]
    assert last.path == f"/v1/checkout/sessions/{session['id']}"
    assert last.query.getall("expand[0]") == ["payment_intent"]
    assert last.headers["Stripe-Version"] == API_VERSION
    assert last.headers["Authorization"] == f"Bearer {API_KEY}"


async def test_the_client_gives_up_after_two_retries(aiohttp_server):
    fake = FakeStripe({}, [500, 500, 500, 500])
    client = StripeCheckouts(Secret(API_KEY), api_base=await fake_stripe(aiohttp_server, fake))
    try:
        with pytest.raises(ProviderError, match="HTTP 500"):
            await client.retrieve_checkout("cs_test_1")
    finally:
        await client.close()
    assert len(fake.requests) == 3


async def test_a_stalled_stripe_is_a_provider_error_after_the_timeout(aiohttp_server):
    fake = FakeStripe({}, [], stall_s=30)
    client = StripeCheckouts(
        Secret(API_KEY), api_base=await fake_stripe(aiohttp_server, fake), timeout_s=0.2
    )
    started = time.monotonic()
    try:
        async with asyncio.timeout(10):  # without the client's own timeout this would hang
            with pytest.raises(ProviderError):
                await client.retrieve_checkout("cs_test_1")
    finally:
        await client.close()
    assert time.monotonic() - started < 10


@pytest.fixture
async def sandbox_only(aiohttp_server):
    harness: Harness = await start_sandbox(aiohttp_server, sandbox_config(None))
    yield harness
    await harness.close()
    assert harness.schema_failures == []


async def test_create_checkout_asks_stripe_for_exactly_our_checkout(sandbox_only: Harness):
    client = StripeCheckouts(Secret(API_KEY), api_base=sandbox_only.url)
    expires_at = int(time.time()) + 3600
    request = CheckoutRequest(
        sid="sid-9", address="4a1::9", amount=2500, currency="eur",
        success_url="https://shop.example/ok?session_id={CHECKOUT_SESSION_ID}",
        cancel_url="https://shop.example/cancel", expires_at=expires_at,
        idempotency_key="checkout-key-1",
    )  # fmt: skip
    try:
        made = await client.create_checkout(request)
        again = await client.create_checkout(request)
    finally:
        await client.close()
    assert again == made  # one checkout per idempotency key
    session = await sandbox_only.sdk.v1.checkout.sessions.retrieve_async(made.id)
    assert (made.url, made.expires_at) == (session.url, expires_at)
    assert made.url.startswith("http")
    assert (session.mode, session.amount_total, session.currency) == ("payment", 2500, "eur")
    assert session.client_reference_id == "sid-9"
    assert session.adaptive_pricing is not None
    assert session.adaptive_pricing.enabled is False  # our price, in our currency
    assert session.metadata is not None
    assert session.metadata.to_dict() == {"sid": "sid-9", "address": "4a1::9"}
    assert session.success_url == request.success_url
    assert session.cancel_url == request.cancel_url
    assert sandbox_only.engine.state.intent_data[made.id]["metadata"] == {
        "sid": "sid-9",
        "address": "4a1::9",
    }
    items = await sandbox_only.sdk.v1.checkout.sessions.line_items.list_async(made.id)
    [item] = items.data
    assert (item.quantity, item.amount_total, item.description) == (1, 2500, "Hero credits")


# -- reconciliation: every page, only the period asked ---------------------------------------


async def paid_session(sandbox: Harness, sid: str) -> str:
    session = await sandbox.new_session(client_reference_id=sid, metadata={"sid": sid})
    assert (await sandbox.pay(session.url)).status == 303
    return session.id


async def test_reconcile_reads_every_page_of_more_than_a_hundred_sessions(sandbox_only: Harness):
    ids = []
    for start in range(0, 102, 17):  # a few at a time: the sandbox is one process
        ids += await asyncio.gather(
            *(paid_session(sandbox_only, f"sid-{n}") for n in range(start, min(start + 17, 102)))
        )
    client = StripeCheckouts(Secret(API_KEY), api_base=sandbox_only.url)
    try:
        reported = await client.settled_since(0)
    finally:
        await client.close()
    paid = [e.checkout_id for e in reported if e.kind is EventKind.PAID]
    assert len(paid) == len(reported) == 102
    assert sorted(paid, key=str) == sorted(ids)  # each once: the pages neither overlap nor skip
    assert all(e.event_id == f"reconcile:{e.checkout_id}" for e in reported)


async def test_reconcile_reads_only_the_period_asked_and_reversals_oldest_first(
    clocked_sandbox: Harness, clock
):
    before = await paid_session(clocked_sandbox, "sid-old")
    old = await clocked_sandbox.sdk.v1.checkout.sessions.retrieve_async(before)
    assert isinstance(old.payment_intent, str)
    await clocked_sandbox.sdk.v1.refunds.create_async(
        {"payment_intent": old.payment_intent, "amount": 50}
    )
    clock.advance(10_000)
    since = int(clock.now) - 10
    after = await paid_session(clocked_sandbox, "sid-new")
    pending = await clocked_sandbox.new_session(client_reference_id="sid-bank")
    assert (await clocked_sandbox.pay_by_bank(pending.url)).status == 303  # complete, unpaid
    new = await clocked_sandbox.sdk.v1.checkout.sessions.retrieve_async(after)
    assert isinstance(new.payment_intent, str)
    first = await clocked_sandbox.sdk.v1.refunds.create_async(
        {"payment_intent": new.payment_intent, "amount": 100}
    )
    clock.advance(5)
    second = await clocked_sandbox.sdk.v1.refunds.create_async(
        {"payment_intent": new.payment_intent, "amount": 200}
    )
    client = StripeCheckouts(Secret(API_KEY), api_base=clocked_sandbox.url)
    try:
        reported = await client.settled_since(since)
    finally:
        await client.close()
    assert [e.checkout_id for e in reported if e.kind is EventKind.PAID] == [after]
    assert all(isinstance(e, ProviderEvent) for e in reported)
    assert pending.id not in {e.checkout_id for e in reported}  # still settling: not paid
    reversals = [e for e in reported if e.kind is not EventKind.PAID]
    assert reversals, "the refunds since then are reported"
    assert {e.external_ref for e in reversals} == {new.payment_intent}
    named = [e.reversal_id for e in reversals if e.reversal_id]
    assert named.index(first.id) < named.index(second.id)  # oldest first
    assert all(e.event_id.startswith("evt_") for e in reversals)


class FakeLists:
    """Stripe's list endpoints in miniature: `pages` of sessions, each (objects, has_more),
    served in turn by `starting_after`; events answered with one empty page."""

    def __init__(self, pages: list[tuple[list[str], bool]]) -> None:
        self.pages = pages
        self.queries: list[dict[str, list[str]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        query = {key: request.query.getall(key) for key in request.query}
        self.queries.append({"path": [request.path], **query})
        if request.path == "/v1/events":
            return web.json_response({"object": "list", "data": [], "has_more": False})
        after = request.query.get("starting_after")
        index = 0 if after is None else next(
            n + 1 for n, (ids, _) in enumerate(self.pages) if ids and ids[-1] == after
        )  # fmt: skip
        ids, has_more = self.pages[index]
        sessions = [_session(id=i, object="checkout.session", livemode=False) for i in ids]
        return web.json_response({"object": "list", "data": sessions, "has_more": has_more})


async def listed(aiohttp_server, fake: FakeLists, since: int) -> list[ProviderEvent]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", fake.handle)
    server = await aiohttp_server(app)
    client = StripeCheckouts(Secret(API_KEY), api_base=str(server.make_url("")).rstrip("/"))
    try:
        return await client.settled_since(since)
    finally:
        await client.close()


async def test_reconcile_asks_for_complete_sessions_since_then_page_by_page(aiohttp_server):
    fake = FakeLists([(["cs_1", "cs_2"], True), (["cs_3"], False)])
    reported = await listed(aiohttp_server, fake, since=1_700_000_000)
    assert [e.checkout_id for e in reported] == ["cs_1", "cs_2", "cs_3"]
    sessions = [q for q in fake.queries if q["path"] == ["/v1/checkout/sessions"]]
    assert len(sessions) == 2  # the last page says there is no more: no third request
    first, second = sessions
    assert first == {
        "path": ["/v1/checkout/sessions"], "created[gte]": ["1700000000"],
        "status": ["complete"], "limit": ["100"],
    }  # fmt: skip
    assert second == {**first, "starting_after": ["cs_2"]}
    [events] = [q for q in fake.queries if q["path"] == ["/v1/events"]]
    assert events["created[gte]"] == ["1700000000"]
    assert events["types[0]"] == ["charge.refunded"]
    assert len([key for key in events if key.startswith("types[")]) == 10


async def test_reconcile_stops_at_an_empty_page_even_if_more_is_promised(aiohttp_server):
    fake = FakeLists([(["cs_1"], True), ([], True)])
    reported = await listed(aiohttp_server, fake, since=0)
    assert [e.checkout_id for e in reported] == ["cs_1"]


async def test_reconcile_refuses_a_period_of_more_than_a_hundred_pages(aiohttp_server):
    fake = FakeLists([([f"cs_{n}"], True) for n in range(101)])
    with pytest.raises(ProviderError, match=r"^more than 10000 objects since then"):
        await listed(aiohttp_server, fake, since=0)
    assert len(fake.queries) == 100


def test_a_tolerance_of_one_second_is_allowed():
    assert StripeWebhooks([Secret(SIGNING_SECRET)], tolerance_s=1) is not None


def _request(**overrides: Any) -> CheckoutRequest:
    fields: dict[str, Any] = {
        "sid": "sid-9", "address": "4a1::9", "amount": 2500, "currency": "usd",
        "success_url": "https://shop.example/ok", "cancel_url": "https://shop.example/no",
        "expires_at": 1_900_000_000, "idempotency_key": "checkout-key-2",
    }  # fmt: skip
    return CheckoutRequest(**{**fields, **overrides})


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://pay.example/cs_1", True),
        ("http://127.0.0.1:1/cs_1", True),
        ("ftp://pay.example/cs_1", False),
        (None, False),
    ],
)
async def test_a_checkout_needs_a_payment_page_url(aiohttp_server, url, accepted):
    session = {"id": "cs_1", "object": "checkout.session", "url": url, "expires_at": 5}
    fake = FakeStripe(session, [])
    client = StripeCheckouts(Secret(API_KEY), api_base=await fake_stripe(aiohttp_server, fake))
    try:
        if accepted:
            made = await client.create_checkout(_request())
            assert (made.id, made.url, made.expires_at) == ("cs_1", url, 5)
        else:
            with pytest.raises(
                ProviderError, match=r"^Stripe answered without a payment page URL$"
            ):
                await client.create_checkout(_request())
    finally:
        await client.close()
    assert fake.requests[0].headers["Idempotency-Key"] == "checkout-key-2"


async def refused(aiohttp_server, status: int, error: dict[str, Any], **headers: str) -> str:
    async def handle(request: web.Request) -> web.Response:
        return web.json_response({"error": error}, status=status, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = await aiohttp_server(app)
    client = StripeCheckouts(Secret(API_KEY), api_base=str(server.make_url("")).rstrip("/"))
    try:
        with pytest.raises(ProviderError) as caught:
            await client.create_checkout(_request())
    finally:
        await client.close()
    return str(caught.value)


async def test_a_refusal_says_what_stripe_said_by_its_identifiers_only(aiohttp_server):
    error = {"type": "invalid_request_error", "code": "parameter_invalid_integer",
             "param": "line_items[0][price_data][unit_amount]",
             "message": "sk_test_secret_would_be_here"}  # fmt: skip
    message = await refused(aiohttp_server, 400, error, **{"Request-Id": "req_123"})
    assert message == (
        "Stripe refused or did not answer: InvalidRequestError (HTTP 400, code"
        " parameter_invalid_integer, param line_items[0][price_data][unit_amount], request"
        " req_123)"
    )
    long_code = {"type": "invalid_request_error", "code": "c" * 150, "message": "no"}
    message = await refused(aiohttp_server, 400, long_code)
    assert message == (
        f"Stripe refused or did not answer: InvalidRequestError (HTTP 400, code {'c' * 95})"
    )


async def test_a_stripe_that_cannot_be_reached_is_named_by_the_error_alone():
    client = StripeCheckouts(Secret(API_KEY), api_base="http://127.0.0.1:9")
    try:
        with pytest.raises(ProviderError) as caught:
            await client.retrieve_checkout("cs_test_1")
    finally:
        await client.close()
    assert str(caught.value) == "Stripe refused or did not answer: APIConnectionError"


def test_a_listed_refund_without_payment_intent_belongs_to_the_charges_payment():
    listed = [refund(payment_intent=None, amount=30, refund_id="re_l", charge_id="ch_l")]
    evt = event(
        "charge.refunded",
        charge(payment_intent="pi_c", amount=100, amount_refunded=30, refunds=listed),
    )
    [part] = normalise_event(evt).parts
    assert (part.external_ref, part.reversal_id, part.amount) == ("pi_c", "re_l", 30)


def test_a_reversal_status_of_any_json_type_is_unknown_not_a_crash():
    evt = dispute_event("charge.dispute.updated", payment_intent="pi_1", amount=5,
                        dispute_id="dp_j")  # fmt: skip
    evt["data"]["object"]["status"] = ["won"]
    got = normalise_event(evt)
    assert (got.kind, got.note) == (
        EventKind.UNKNOWN,
        "dispute dp_j has unknown status \"['won']\"",
    )


async def test_reconcile_reports_reversal_events_it_cannot_read(aiohttp_server):
    fake = FakeLists([([], False)])
    long_id, long_type = "evt_" + "1" * 150, "refund." + "u" * 150
    unreadable = [
        {"object": "event", "id": long_id, "type": long_type},
        {"object": "event", "id": "evt_2", "type": "refund.created", "data": {"object": "re_1"}},
    ]

    async def events(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": unreadable, "has_more": False})

    app = web.Application()
    app.router.add_get("/v1/events", events)
    app.router.add_get("/{tail:.*}", fake.handle)
    server = await aiohttp_server(app)
    client = StripeCheckouts(Secret(API_KEY), api_base=str(server.make_url("")).rstrip("/"))
    try:
        reported = await client.settled_since(0)
    finally:
        await client.close()
    assert reported == [
        ProviderEvent(
            provider="stripe", kind=EventKind.IGNORED, event_id="evt_2",
            raw_type="refund.created", note="cannot be read: Stripe event lacks id, type or"
            " data.object",
        ),
        ProviderEvent(
            provider="stripe", kind=EventKind.IGNORED, event_id=long_id[:100],
            raw_type=long_type[:100], note="cannot be read: Stripe event lacks id, type or"
            " data.object",
        ),
    ]  # fmt: skip
