"""The sandbox's /v1 API through the official SDK, sync and async, over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import aiohttp
import pytest
import stripe
from stripe.params import RefundCreateParams

from hero_onboarding.primitives import Secret
from tests.conftest import sandbox_config, start_sandbox
from tests.sandbox_kit import API_KEY, Harness, run_sync, session_params


async def test_create_retrieve_list_expire_with_the_async_sdk(
    sandbox: Harness, stripe_client: stripe.StripeClient
) -> None:
    sessions = stripe_client.v1.checkout.sessions
    created = await sessions.create_async(session_params(), {"idempotency_key": "order-1"})
    assert created.id.startswith("cs_test_")
    assert len(created.id) == 66
    assert created.object == "checkout.session"
    assert created.livemode is False
    assert (created.status, created.payment_status, created.payment_intent) == (
        "open",
        "unpaid",
        None,
    )
    assert created.amount_total == 1000
    assert created.currency == "usd"
    assert created.url == f"{sandbox.url}/c/pay/{created.id}"
    assert created.client_reference_id == "sid-1"
    assert created.metadata is not None
    assert created.metadata.to_dict() == {"sid": "sid-1", "address": "4a1::1"}
    assert created.expires_at == pytest.approx(created.created + 24 * 3600, abs=2)

    fetched = await sessions.retrieve_async(created.id, {"expand": ["line_items"]})
    assert fetched.id == created.id
    assert fetched.line_items is not None
    assert [item.description for item in fetched.line_items.data] == ["Hero credits"]

    second = await sessions.create_async(session_params(client_reference_id="sid-2"))
    listed = await sessions.list_async({"limit": 1})
    assert [s.id for s in listed.data] == [second.id]
    assert listed.has_more is True
    rest = await sessions.list_async({"limit": 10, "starting_after": second.id})
    assert [s.id for s in rest.data] == [created.id]
    assert rest.has_more is False
    open_ones = await sessions.list_async({"status": "open"})
    assert {s.id for s in open_ones.data} == {created.id, second.id}

    expired = await sessions.expire_async(created.id)
    assert (expired.status, expired.url) == ("expired", None)
    with pytest.raises(stripe.InvalidRequestError, match="can be expired"):
        await sessions.expire_async(created.id)
    events = await stripe_client.v1.events.list_async({"type": "checkout.session.expired"})
    assert [e.data.object.id for e in events.data] == [created.id]
    assert events.data[0].request is not None
    assert events.data[0].request.idempotency_key is not None  # caused by our API call


async def test_the_sync_sdk_works_too(sandbox: Harness) -> None:
    client = sandbox.sync_client()
    created = await run_sync(client.v1.checkout.sessions.create, session_params())
    fetched = await run_sync(client.v1.checkout.sessions.retrieve, created.id)
    assert fetched.amount_total == 1000
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await run_sync(client.v1.checkout.sessions.retrieve, "cs_test_missing")
    assert (caught.value.http_status, caught.value.code) == (404, "resource_missing")


async def test_idempotency_key_replays_the_first_answer(
    stripe_client: stripe.StripeClient, sandbox: Harness
) -> None:
    sessions = stripe_client.v1.checkout.sessions
    first = await sessions.create_async(session_params(), {"idempotency_key": "k-1"})
    again = await sessions.create_async(session_params(), {"idempotency_key": "k-1"})
    assert again.id == first.id
    assert len(sandbox.engine.state.sessions) == 1

    with pytest.raises(stripe.IdempotencyError) as caught:
        await sessions.create_async(
            session_params(client_reference_id="someone-else"), {"idempotency_key": "k-1"}
        )
    assert caught.value.http_status == 400
    assert len(sandbox.engine.state.sessions) == 1


async def test_a_request_that_failed_validation_keeps_nothing_under_its_key(
    stripe_client: stripe.StripeClient,
) -> None:
    sessions = stripe_client.v1.checkout.sessions
    with pytest.raises(stripe.InvalidRequestError):
        await sessions.create_async(session_params(mode="setup"), {"idempotency_key": "k-2"})
    fixed = await sessions.create_async(session_params(), {"idempotency_key": "k-2"})
    assert fixed.status == "open"


@pytest.mark.parametrize(
    ("overrides", "param", "code", "message"),
    [
        ({"colour": "blue"}, "colour", "parameter_unknown", "Received unknown parameter: colour"),
        ({"mode": None}, "mode", "parameter_missing", "Missing required param: mode."),
        ({"mode": "rental"}, "mode", None, "must be one of payment, setup, or subscription"),
        ({"success_url": None}, "success_url", "parameter_missing", "success_url"),
        ({"success_url": "not a url"}, "success_url", "url_invalid", "Not a valid URL"),
        ({"client_reference_id": "x" * 201}, "client_reference_id", None, "at most 200"),
        ({"expires_at": "soon"}, "expires_at", "parameter_invalid_integer", "Invalid integer"),
        ({"customer_email": "nobody"}, "customer_email", "email_invalid", "email"),
        ({"expand": ["subscription"]}, "expand[0]", None, "cannot be expanded"),
        ({"discounts": [{"coupon": "X"}]}, "discounts", None, "does not emulate discounts"),
        (
            {"line_items": [{"quantity": 1}]},
            "line_items[0][price_data]",
            "parameter_missing",
            "Missing required param",
        ),
        (
            {"line_items": [{"price": "price_123", "quantity": 1}]},
            "line_items[0][price]",
            "resource_missing",
            "No such price",
        ),
        (
            {"metadata": {"k" * 41: "v"}},
            f"metadata[{'k' * 41}]",
            None,
            "at most 40 characters",
        ),
    ],
)
async def test_bad_params_get_stripes_error_shape(
    stripe_client: stripe.StripeClient,
    overrides: dict[str, object],
    param: str,
    code: str | None,
    message: str,
) -> None:
    params = {k: v for k, v in session_params(**overrides).items() if v is not None}
    with pytest.raises(stripe.InvalidRequestError) as caught:  # bad params on purpose:
        await stripe_client.v1.checkout.sessions.create_async(params)  # type: ignore[arg-type]
    error = caught.value
    assert error.http_status in (400, 404)
    assert error.param == param
    assert error.code == code
    assert message in error.user_message
    assert isinstance(error.json_body, dict)
    assert error.json_body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("unit_amount", "code", "message"),
    [
        (49, "amount_too_small", "at least 0.50 USD"),
        (100_000_000, "amount_too_large", "no more than 999,999.99 USD"),
    ],
)
async def test_amount_limits(
    stripe_client: stripe.StripeClient, unit_amount: int, code: str, message: str
) -> None:
    item = {
        "price_data": {
            "currency": "usd",
            "unit_amount": unit_amount,
            "product_data": {"name": "Hero credits"},
        },
        "quantity": 1,
    }
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await stripe_client.v1.checkout.sessions.create_async(session_params(line_items=[item]))
    assert (caught.value.code, caught.value.http_status) == (code, 400)
    assert message in caught.value.user_message


async def test_the_largest_eight_digit_amount_is_accepted(
    stripe_client: stripe.StripeClient,
) -> None:
    item = {
        "price_data": {"currency": "usd", "unit_amount": 33_333_333, "product_data": {"name": "x"}},
        "quantity": 3,
    }
    created = await stripe_client.v1.checkout.sessions.create_async(
        session_params(line_items=[item])
    )
    assert created.amount_total == 99_999_999


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(29 * 60, False), (31 * 60, True), (23 * 3600, True), (25 * 3600, False)],
)
async def test_expires_at_must_fall_between_30_minutes_and_24_hours(
    stripe_client: stripe.StripeClient, offset: int, accepted: bool
) -> None:
    params = session_params(expires_at=int(time.time()) + offset)
    if accepted:
        created = await stripe_client.v1.checkout.sessions.create_async(params)
        assert created.expires_at == params["expires_at"]
    else:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            await stripe_client.v1.checkout.sessions.create_async(params)
        assert caught.value.param == "expires_at"


@pytest.mark.parametrize(
    ("api_key", "message"),
    [
        ("sk_live_real_money", "test-mode secret keys"),
        ("rk_live_restricted", "test-mode secret keys"),
        ("pk_test_publishable", "publishable API key"),
    ],
)
async def test_bad_api_keys_are_refused(sandbox: Harness, api_key: str, message: str) -> None:
    with pytest.raises(stripe.AuthenticationError) as caught:
        await run_sync(sandbox.sync_client(api_key).v1.checkout.sessions.list)
    assert caught.value.http_status == 401
    assert message in caught.value.user_message
    assert api_key not in str(caught.value.json_body)


async def test_a_pinned_api_key_refuses_every_other_key(aiohttp_server) -> None:
    pinned = "sk_test_pinned_" + "d4" * 12
    harness = await start_sandbox(aiohttp_server, sandbox_config(None, api_key=Secret(pinned)))
    try:
        with pytest.raises(stripe.AuthenticationError) as caught:
            await run_sync(harness.sync_client(API_KEY).v1.checkout.sessions.list)
        assert "Invalid API Key provided." in caught.value.user_message
        assert API_KEY not in str(caught.value.json_body)
        assert pinned not in str(caught.value.json_body)
        listed = await run_sync(harness.sync_client(pinned).v1.checkout.sessions.list)
        assert listed.data == []
    finally:
        await harness.close()


async def test_missing_or_garbled_authorization_is_401(sandbox: Harness) -> None:
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic !!!"}):
        async with sandbox.http.get(sandbox.url + "/v1/events", headers=headers) as response:
            body = await response.json()
        assert response.status == 401, headers
        assert "did not provide an API key" in body["error"]["message"]


async def test_basic_auth_with_the_key_as_user_name_works(sandbox: Harness) -> None:
    basic = base64.b64encode(f"{API_KEY}:".encode()).decode()  # what `curl -u KEY:` sends
    headers = {"Authorization": f"Basic {basic}"}
    async with sandbox.http.get(sandbox.url + "/v1/events", headers=headers) as response:
        assert response.status == 200
        assert (await response.json())["object"] == "list"


async def test_unknown_routes_and_bodies_get_stripe_errors_not_tracebacks(
    sandbox: Harness,
) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with sandbox.http.get(sandbox.url + "/v1/customers", headers=headers) as response:
        body = await response.json()
    assert response.status == 404
    assert body["error"]["message"].startswith("Unrecognized request URL (GET: /v1/customers)")

    async with sandbox.http.post(
        sandbox.url + "/v1/checkout/sessions", json={"mode": "payment"}, headers=headers
    ) as response:
        body = await response.json()
    assert response.status == 400
    assert "unsupported Content-Type application/json" in body["error"]["message"]

    async with sandbox.http.post(
        sandbox.url + "/v1/checkout/sessions",
        data="mode=payment&mode[x]=1",
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    ) as response:
        body = await response.json()
    assert response.status == 400
    assert "more than once" in body["error"]["message"]
    assert response.headers["Request-Id"].startswith("req_")


async def test_a_sandbox_bug_is_a_500_api_error_without_a_traceback(
    sandbox: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(query: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("secret internals")

    sandbox.engine.list_events = broken  # type: ignore[method-assign]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with sandbox.http.get(sandbox.url + "/v1/events", headers=headers) as response:
        text = await response.text()
    assert response.status == 500
    assert '"type": "api_error"' in text
    assert "secret internals" not in text
    assert "Traceback" not in text
    assert "secret internals" in caplog.text  # logged for the operator, with the traceback


async def test_a_change_cancelled_before_its_answer_keeps_its_idempotent_answer(
    sandbox: Harness,
) -> None:
    """Cancelled (as at shutdown) after the session was created: the connection drops, and a
    retry with the same key replays a 500 instead of creating a second session or hanging on
    409 "in progress" for the key's whole lifetime."""

    def cancelled(session: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        raise asyncio.CancelledError

    sandbox.engine.render_session = cancelled  # type: ignore[method-assign]
    url = sandbox.url + "/v1/checkout/sessions"
    headers = {
        "Authorization": f"Bearer {API_KEY}",
        "Idempotency-Key": "cut-1",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    body = (
        "mode=payment&success_url=https%3A%2F%2Fshop.example%2Fok&line_items[0][quantity]=1"
        "&line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=1000"
        "&line_items[0][price_data][product_data][name]=Hero%20credits"
    )
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with sandbox.http.post(url, data=body, headers=headers) as response:
            await response.read()
    assert len(sandbox.engine.state.sessions) == 1  # the change happened before the cut
    del sandbox.engine.render_session

    async with sandbox.http.post(url, data=body, headers=headers) as response:
        replayed = await response.json()
    assert response.status == 500
    assert response.headers["Idempotent-Replayed"] == "true"
    assert replayed["error"]["type"] == "api_error"
    assert len(sandbox.engine.state.sessions) == 1  # never run twice


async def test_payment_intents_and_events_can_be_fetched(
    sandbox: Harness, stripe_client: stripe.StripeClient
) -> None:
    created = await stripe_client.v1.checkout.sessions.create_async(session_params())
    response = await sandbox.pay(created.url)
    assert response.status == 303

    paid = await stripe_client.v1.checkout.sessions.retrieve_async(
        created.id, {"expand": ["payment_intent"]}
    )
    intent = paid.payment_intent
    assert isinstance(intent, stripe.PaymentIntent)
    assert intent.object == "payment_intent"
    assert intent.status == "succeeded"
    assert intent.amount == intent.amount_received == 1000
    assert intent.metadata.to_dict() == {"sid": "sid-1"}
    again = await stripe_client.v1.payment_intents.retrieve_async(intent.id)
    assert again.latest_charge == intent.latest_charge

    since = paid.created
    events = await stripe_client.v1.events.list_async(
        {"created": {"gte": since}, "types": ["checkout.session.completed", "charge.succeeded"]}
    )
    assert sorted(e.type for e in events.data) == ["charge.succeeded", "checkout.session.completed"]
    completed = next(e for e in events.data if e.type == "checkout.session.completed")
    fetched = await stripe_client.v1.events.retrieve_async(completed.id)
    assert fetched.data.object.payment_intent == intent.id
    assert fetched.data.object.payment_status == "paid"

    page = await stripe_client.v1.events.list_async({"limit": 1})
    assert page.has_more is True
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await stripe_client.v1.events.list_async({"limit": 101})
    assert caught.value.param == "limit"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await stripe_client.v1.payment_intents.retrieve_async("pi_missing")
    assert caught.value.code == "resource_missing"


async def test_refunds_emit_charge_refunded_with_a_running_total(
    sandbox: Harness, stripe_client: stripe.StripeClient
) -> None:
    created = await stripe_client.v1.checkout.sessions.create_async(session_params())
    await sandbox.pay(created.url)
    paid = await stripe_client.v1.checkout.sessions.retrieve_async(created.id)
    assert isinstance(paid.payment_intent, str)

    first = await stripe_client.v1.refunds.create_async(
        {"payment_intent": paid.payment_intent, "amount": 300}
    )
    assert (first.object, first.amount, first.status) == ("refund", 300, "succeeded")
    await stripe_client.v1.refunds.create_async({"payment_intent": paid.payment_intent})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await stripe_client.v1.refunds.create_async({"payment_intent": paid.payment_intent})
    assert caught.value.code == "charge_already_refunded"

    refunded = await stripe_client.v1.events.list_async({"type": "charge.refunded"})
    totals = [e.data.object.amount_refunded for e in reversed(refunded.data)]
    assert totals == [300, 1000]
    assert refunded.data[0].data.object.refunded is True


HOSTILE_BODIES = [
    ("line_items[0]=", "line_items[0]"),
    ("mode=payment&adaptive_pricing=&line_items[0][quantity]=1", "success_url"),
    ("mode=payment&success_url=http://[abc/ok&line_items[0][quantity]=1", None),
    (
        "line_items[0][price_data][product_data][name]=",
        "line_items[0][price_data][product_data][name]",
    ),
    ("payment_intent_data[metadata]=&mode=[x", None),
]


@pytest.mark.parametrize(("body", "param"), HOSTILE_BODIES)
async def test_hostile_form_bodies_get_a_400_never_a_500(
    sandbox: Harness, body: str, param: str | None
) -> None:
    async with sandbox.http.post(
        sandbox.url + "/v1/checkout/sessions",
        data=body.encode(),
        headers={
            "Authorization": f"Bearer {API_KEY}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    ) as response:
        error = (await response.json())["error"]
    assert response.status == 400, error
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"mode=\xff", "application/x-www-form-urlencoded", 400, "not UTF-8"),
        (b"mode=payment", "application/x-www-form-urlencoded; charset=bogus", 400, None),
        (b"x=" + b"a" * (1024 * 1024 + 10), "application/x-www-form-urlencoded", 413, "Too Large"),
    ],
)
async def test_unreadable_bodies_get_stripe_errors(
    sandbox: Harness, body: bytes, content_type: str, status: int, message: str | None
) -> None:
    async with sandbox.http.post(
        sandbox.url + "/v1/checkout/sessions",
        data=body,
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": content_type},
    ) as response:
        error = (await response.json())["error"]
    assert response.status == status, error
    if message is not None:
        assert message in error["message"]


async def test_a_basic_auth_header_of_non_ascii_bytes_is_401(sandbox: Harness) -> None:
    headers = {"Authorization": "Basic " + base64.b64encode("é:".encode("latin-1")).decode()}
    async with sandbox.http.get(sandbox.url + "/v1/events", headers=headers) as response:
        assert response.status == 401


async def test_the_sdks_newer_allowed_payment_method_types_is_read(
    stripe_client: stripe.StripeClient,
) -> None:
    created = await stripe_client.v1.checkout.sessions.create_async(
        session_params(allowed_payment_method_types=["card"])
    )
    assert created.payment_method_types == ["card"]
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await stripe_client.v1.checkout.sessions.create_async(
            session_params(allowed_payment_method_types=["card"], payment_method_types=["card"])
        )
    assert caught.value.code == "parameters_exclusive"


async def test_the_same_key_with_list_params_reordered_is_other_params(
    stripe_client: stripe.StripeClient,
) -> None:
    sessions = stripe_client.v1.checkout.sessions
    await sessions.create_async(
        session_params(payment_method_types=["card", "us_bank_account"]), {"idempotency_key": "r"}
    )
    with pytest.raises(stripe.IdempotencyError):
        await sessions.create_async(
            session_params(payment_method_types=["us_bank_account", "card"]),
            {"idempotency_key": "r"},
        )


async def test_expanding_what_cannot_be_expanded_is_refused(
    sandbox: Harness, stripe_client: stripe.StripeClient
) -> None:
    session = await sandbox.new_session()
    await sandbox.pay(session.url)
    paid = await stripe_client.v1.checkout.sessions.retrieve_async(session.id)
    assert isinstance(paid.payment_intent, str)
    with pytest.raises(stripe.InvalidRequestError, match="cannot be expanded"):
        await stripe_client.v1.payment_intents.retrieve_async(
            paid.payment_intent, {"expand": ["customer"]}
        )
    listed = await stripe_client.v1.checkout.sessions.list_async(
        {"expand": ["data.payment_intent"]}
    )
    expanded = listed.data[0].payment_intent
    assert isinstance(expanded, stripe.PaymentIntent)
    assert expanded.id == paid.payment_intent
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await stripe_client.v1.checkout.sessions.list_async(
            {"starting_after": session.id, "ending_before": session.id}
        )
    assert caught.value.code == "parameters_exclusive"


@pytest.mark.slow  # several seconds even alone
async def test_a_change_whose_save_failed_is_never_run_twice(
    aiohttp_server, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    state_dir = tmp_path / "state"
    harness = await start_sandbox(
        aiohttp_server, sandbox_config(None, state_file=state_dir / "state.json")
    )
    try:
        session = await harness.new_session()
        await harness.pay(session.url)
        paid = await harness.sdk.v1.checkout.sessions.retrieve_async(session.id)
        assert isinstance(paid.payment_intent, str)
        (state_dir / "state.json").unlink()
        state_dir.rmdir()
        state_dir.write_text("a file where the state directory was")  # every save now fails

        refunds = harness.sdk.v1.refunds
        params: RefundCreateParams = {"payment_intent": paid.payment_intent, "amount": 400}
        with pytest.raises(stripe.APIError) as first:
            await refunds.create_async(params, {"idempotency_key": "refund-1"})
        assert first.value.http_status == 500
        with pytest.raises(stripe.APIError):  # the SDK retried twice already; so does a person
            await refunds.create_async(params, {"idempotency_key": "refund-1"})
        assert isinstance(first.value.json_body, dict)
        assert first.value.json_body["error"]["message"] == "An unknown error occurred"
        assert len(harness.engine.state.refunds) == 1
        charge = harness.engine.state.charges[
            harness.engine.state.payment_intents[paid.payment_intent]["latest_charge"]
        ]
        assert charge["amount_refunded"] == 400
        assert "could not save the sandbox state" in caplog.text
    finally:
        state_dir.unlink()
        await harness.close()
