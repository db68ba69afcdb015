"""Where a stripe-node client found the sandbox unlike Stripe, each closed and kept closed:
API versions, expansions, payment_intent.created, idempotency by params, UTF-8 webhooks, and
Stripe's test-mode retry schedule.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any, cast

import pytest
import stripe
from aiohttp import web
from stripe.params.checkout import SessionCreateParams

from hero_onboarding.primitives import Secret
from hero_onboarding.sandbox.config import SandboxConfig, WebhookEndpoint
from hero_onboarding.sandbox.objects import API_VERSION
from tests.conftest import SIGNING_SECRET, sandbox_config, start_sandbox
from tests.processes import free_port, run_cli, start_daemon
from tests.sandbox_kit import API_KEY, Harness, Receiver, session_params, wait_for_types
from tests.waiting import wait_until_async

AUTH = {"Authorization": f"Bearer {API_KEY}"}


# -- Stripe-Version ---------------------------------------------------------------------------


async def test_the_sdks_version_is_answered_and_echoed(sandbox: Harness) -> None:
    assert stripe.api_version == API_VERSION  # the SDK sends the version the sandbox renders
    for headers in ({**AUTH, "Stripe-Version": API_VERSION}, AUTH):
        async with sandbox.http.get(sandbox.url + "/v1/events", headers=headers) as response:
            assert response.status == 200
            assert response.headers["Stripe-Version"] == API_VERSION


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("2024-06-20", "Invalid Stripe API version: 2024-06-20. The sandbox renders objects"),
        ("2025-03-31.basil", "Invalid Stripe API version: 2025-03-31.basil. The sandbox"),
        ("banana", "Invalid Stripe API version: banana"),
    ],
)
async def test_versions_the_sandbox_does_not_render_are_refused(
    sandbox: Harness, version: str, message: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await sandbox.sdk.v1.checkout.sessions.create_async(
            session_params(), {"stripe_version": version}
        )
    assert caught.value.http_status == 400
    assert caught.value.error is not None
    assert caught.value.error.type == "invalid_request_error"
    assert str(caught.value.user_message).startswith(message)
    assert sandbox.engine.state.sessions == {}  # refused before anything happened


async def test_webhooks_name_the_endpoints_version(aiohttp_server, receiver: Receiver) -> None:
    endpoint = WebhookEndpoint(receiver.url, (Secret(SIGNING_SECRET),), api_version=API_VERSION)
    harness = await start_sandbox(aiohttp_server, sandbox_config(None, endpoints=(endpoint,)))
    try:
        created = await harness.new_session()
        await harness.sdk.v1.checkout.sessions.expire_async(created.id)
        await wait_for_types(receiver, "checkout.session.expired")
        assert receiver.received[0].event["api_version"] == API_VERSION
    finally:
        await harness.close()
    with pytest.raises(ValueError, match=r"renders API versions 2026-10-28\.endive only"):
        WebhookEndpoint(receiver.url, (Secret(SIGNING_SECRET),), api_version="2024-06-20")


# -- expansions and payment_intent.created ----------------------------------------------------


async def test_sessions_expand_customer_and_intents_expand_latest_charge(
    sandbox: Harness, stripe_client: stripe.StripeClient
) -> None:
    session = await sandbox.new_session(expand=["customer"])
    assert session.customer is None  # Checkout in payment mode made no customer
    intent_id = await sandbox.paid_intent()
    intent = await stripe_client.v1.payment_intents.retrieve_async(
        intent_id, {"expand": ["latest_charge"]}
    )
    charge = intent.latest_charge
    assert isinstance(charge, stripe.Charge)
    assert charge.object == "charge"  # schema-checked by the fixture's hook
    assert (charge.payment_intent, charge.paid) == (intent_id, True)
    plain = await stripe_client.v1.payment_intents.retrieve_async(intent_id)
    assert plain.latest_charge == charge.id


async def test_payment_intent_created_comes_first(
    sandbox: Harness, stripe_client: stripe.StripeClient, receiver: Receiver
) -> None:
    intent_id = await sandbox.paid_intent()
    created = await stripe_client.v1.events.list_async({"type": "payment_intent.created"})
    [event] = created.data
    assert event.data.object.id == intent_id
    assert event.data.object.status == "requires_payment_method"
    await wait_for_types(receiver, "payment_intent.created", "checkout.session.completed")
    assert receiver.types()[:2] == ["payment_intent.created", "charge.succeeded"]


# -- idempotency by params --------------------------------------------------------------------


async def test_the_same_params_in_another_order_replay(
    sandbox: Harness, stripe_client: stripe.StripeClient
) -> None:
    params = session_params()
    first = await stripe_client.v1.checkout.sessions.create_async(
        params, {"idempotency_key": "same"}
    )
    metadata = params["metadata"]
    assert isinstance(metadata, dict)
    reordered: dict[str, Any] = dict(reversed(list(params.items())))
    reordered["metadata"] = dict(reversed(list(metadata.items())))
    again = await stripe_client.v1.checkout.sessions.create_async(
        cast("SessionCreateParams", reordered), {"idempotency_key": "same"}
    )
    assert again.id == first.id
    assert again.last_response is not None
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    assert len(sandbox.engine.state.sessions) == 1
    with pytest.raises(stripe.IdempotencyError) as caught:
        await stripe_client.v1.checkout.sessions.create_async(
            session_params(metadata={"sid": "sid-1"}), {"idempotency_key": "same"}
        )
    assert caught.value.http_status == 400
    assert caught.value.error is not None
    assert caught.value.error.type == "idempotency_error"


async def test_a_raw_body_in_another_order_replays_too(sandbox: Harness) -> None:
    intent_id = await sandbox.paid_intent()
    form = "application/x-www-form-urlencoded"
    headers = {**AUTH, "Idempotency-Key": "raw", "Content-Type": form}
    bodies = [
        f"payment_intent={intent_id}&amount=100&metadata[a]=1&metadata[b]=2",
        f"metadata[b]=2&amount=100&metadata[a]=1&payment_intent={intent_id}",
    ]
    answers = []
    for body in bodies:
        async with sandbox.http.post(
            sandbox.url + "/v1/refunds", data=body, headers=headers
        ) as response:
            answers.append((response.status, (await response.json())["id"]))
    assert answers[0] == answers[1]
    assert len(sandbox.engine.state.refunds) == 1


# -- webhook bodies in UTF-8 ------------------------------------------------------------------


async def test_webhook_bodies_carry_utf8_and_are_signed_over_it(
    sandbox: Harness, receiver: Receiver
) -> None:
    name = "Zoë, crédits ☃ 日本"
    created = await sandbox.new_session(metadata={"sid": "sid-1", "note": name})
    await sandbox.sdk.v1.checkout.sessions.expire_async(created.id)
    await wait_for_types(receiver, "checkout.session.expired")
    [delivery] = receiver.of_type("checkout.session.expired")
    assert name in delivery.body  # raw, not \\u escapes
    assert "\\u" not in delivery.body
    assert delivery.headers["Content-Type"] == "application/json; charset=utf-8"
    event = stripe.Webhook.construct_event(
        delivery.body, delivery.headers["Stripe-Signature"], SIGNING_SECRET
    )
    assert event.data.object.metadata["note"] == name


# -- the retry schedule -----------------------------------------------------------------------


@pytest.mark.process
def test_the_default_schedule_is_stripes_test_mode() -> None:
    delays = SandboxConfig().retry_delays_s
    assert len(delays) == 3  # "3 retries over a few hours"
    assert 3600 <= sum(delays) <= 6 * 3600
    result = run_cli("sandbox", "--help", env={})
    assert "900,3600,10800" in result.stdout


@pytest.mark.process
async def test_the_cli_flag_sets_a_fast_schedule(tmp_path: Path, aiohttp_server) -> None:
    attempts: list[str] = []

    async def refuse(request: web.Request) -> web.Response:
        attempts.append(json.loads(await request.text())["type"])
        return web.Response(status=500)

    app = web.Application()
    app.router.add_post("/hook", refuse)
    server = await aiohttp_server(app)
    port = free_port()
    args = [
        "sandbox", "--port", str(port), "--webhook", str(server.make_url("/hook")),
        "--webhook-events", "checkout.session.expired", "--retry-delays", "0.05,0.05",
    ]  # fmt: skip
    env = {"STRIPE_WEBHOOK_SIGNING_KEY": SIGNING_SECRET, "STRIPE_SANDBOX_SECRET_KEY": API_KEY}
    process = await asyncio.to_thread(
        start_daemon, args, port=port, ready_path="/health", log_dir=tmp_path, env=env
    )
    http = stripe.AIOHTTPClient()
    client = stripe.StripeClient(API_KEY, http_client=http, base_addresses={"api": process.url})
    try:
        created = await client.v1.checkout.sessions.create_async(session_params())
        await client.v1.checkout.sessions.expire_async(created.id)

        async def failed_for_good() -> bool:
            response = await client.raw_request_async("get", "/_sandbox/deliveries")
            deliveries = json.loads(response.body)["data"]
            return bool(deliveries) and deliveries[0]["status"] == "failed"

        await wait_until_async(failed_for_good, timeout=10, what="the delivery gives up")
        assert attempts == ["checkout.session.expired"] * 3  # the first try and 2 retries
    finally:
        process.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.process.wait, 10)
        await http.close_async()
