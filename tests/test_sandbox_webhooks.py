"""Webhook delivery from the sandbox: Stripe's signature, retries, resends, filters, restarts."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import stripe
from aiohttp import web

from hero_onboarding.payments.base import EventKind
from hero_onboarding.payments.stripe_provider import StripeWebhooks
from hero_onboarding.primitives import Secret
from hero_onboarding.sandbox.config import WebhookEndpoint
from tests.conftest import (
    OTHER_SECRET,
    SIGNING_SECRET,
    balance_of,
    build_app,
    open_checkout,
    register,
    sandbox_config,
    start_sandbox,
)
from tests.sandbox_kit import FakeClock, Harness, Receiver, session_params, wait_for_types
from tests.waiting import wait_until_async


def endpoint_at(url: str, *secrets: str, events: tuple[str, ...] = ("*",)) -> WebhookEndpoint:
    return WebhookEndpoint(url, tuple(Secret(s) for s in secrets or (SIGNING_SECRET,)), events)


async def one_expired_event(harness: Harness) -> str:
    """Create a session and expire it through the API: exactly one event, no payment."""
    created = await harness.new_session()
    await harness.sdk.v1.checkout.sessions.expire_async(created.id)
    return created.id


async def test_deliveries_verify_with_the_sdk_and_with_our_parser(
    sandbox: Harness, receiver: Receiver
) -> None:
    session = await sandbox.new_session()
    await sandbox.pay(session.url)
    await wait_for_types(receiver, "checkout.session.completed")
    delivery = receiver.of_type("checkout.session.completed")[0]
    header = delivery.headers["Stripe-Signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64},v0=[0-9a-f]{64}", header)
    assert delivery.headers["Content-Type"].startswith("application/json")
    assert delivery.headers["User-Agent"].startswith("Stripe/1.0")

    event = stripe.Webhook.construct_event(delivery.body, header, SIGNING_SECRET)
    assert event.type == "checkout.session.completed"
    assert event.data.object.id == session.id
    assert event.api_version == "2026-10-28.endive"
    assert event.livemode is False
    try:
        stripe.Webhook.construct_event(delivery.body, header, OTHER_SECRET)
        raise AssertionError("a delivery verified under a secret it was not signed with")
    except stripe.SignatureVerificationError:
        pass

    parsed = StripeWebhooks([Secret(SIGNING_SECRET)]).parse_webhook(
        delivery.body.encode(), delivery.headers
    )
    assert (parsed.kind, parsed.amount, parsed.currency, parsed.sid) == (
        EventKind.PAID,
        1000,
        "usd",
        "sid-1",
    )
    assert parsed.checkout_id == session.id


async def test_a_receiver_failing_twice_gets_the_event_three_times(
    sandbox: Harness, receiver: Receiver
) -> None:
    receiver.script = [500, 503]
    await one_expired_event(sandbox)

    [delivery] = await sandbox.settled_deliveries(1)
    assert [a["status"] for a in delivery["attempts"]] == [500, 503, 200]
    assert delivery["status"] == "succeeded"
    bodies = [r.event for r in receiver.received]
    assert len(bodies) == 3
    assert len({b["id"] for b in bodies}) == 1
    event = await sandbox.sdk.v1.events.retrieve_async(bodies[0]["id"])
    assert event.pending_webhooks == 0


async def test_retries_are_bounded_and_a_dead_endpoint_is_logged(
    aiohttp_server, sandbox: Harness, receiver: Receiver
) -> None:
    receiver.script = [500] * 10
    await one_expired_event(sandbox)
    [delivery] = await sandbox.settled_deliveries(1)
    assert delivery["status"] == "failed"
    assert len(delivery["attempts"]) == len(receiver.received) == 4  # first try + 3 retries

    dead = endpoint_at("http://127.0.0.1:9/nothing-listens")
    unreachable = await start_sandbox(aiohttp_server, sandbox_config(None, endpoints=(dead,)))
    try:
        await one_expired_event(unreachable)
        [delivery] = await unreachable.settled_deliveries(1)
        assert delivery["status"] == "failed"
        assert len(delivery["attempts"]) == 4
        assert all(a["status"] is None and "Connect" in a["error"] for a in delivery["attempts"])
    finally:
        await unreachable.close()


async def test_resend_delivers_a_duplicate_of_the_same_event(
    sandbox: Harness, receiver: Receiver
) -> None:
    session = await sandbox.new_session()
    await sandbox.pay(session.url)
    await wait_for_types(receiver, "checkout.session.completed")
    event_id = receiver.of_type("checkout.session.completed")[0].event["id"]
    resent = await sandbox.control(f"/_sandbox/events/{event_id}/resend")
    assert [d["event"] for d in resent["data"]] == [event_id]

    async def twice() -> bool:
        return len(receiver.of_type("checkout.session.completed")) == 2

    await wait_until_async(twice, timeout=10, what="the resent event arrives")
    first, second = receiver.of_type("checkout.session.completed")
    assert first.event["id"] == second.event["id"]
    assert [d["status"] for d in await sandbox.deliveries(event=event_id)] == [
        "succeeded",
        "succeeded",
    ]


async def test_endpoints_receive_only_the_types_they_enabled(
    aiohttp_server, receiver: Receiver
) -> None:
    only_sessions = endpoint_at(receiver.url, events=("checkout.session.*",))
    harness = await start_sandbox(aiohttp_server, sandbox_config(None, endpoints=(only_sessions,)))
    try:
        session = await harness.new_session()
        await harness.pay(session.url)
        await harness.settled_deliveries(1)
        assert receiver.types() == ["checkout.session.completed"]
        types = sorted(e["type"] for e in harness.engine.state.events.values())
        assert types == [
            "charge.succeeded",
            "checkout.session.completed",
            "payment_intent.created",
            "payment_intent.succeeded",
        ]
    finally:
        await harness.close()


async def test_during_a_secret_roll_each_delivery_carries_both_signatures(
    aiohttp_server, receiver: Receiver
) -> None:
    rolling = endpoint_at(receiver.url, OTHER_SECRET, SIGNING_SECRET)
    harness = await start_sandbox(aiohttp_server, sandbox_config(None, endpoints=(rolling,)))
    try:
        await one_expired_event(harness)
        await wait_for_types(receiver, "checkout.session.expired")
        delivery = receiver.received[0]
        assert delivery.headers["Stripe-Signature"].count("v1=") == 2
        for secret in (OTHER_SECRET, SIGNING_SECRET):
            stripe.Webhook.construct_event(
                delivery.body, delivery.headers["Stripe-Signature"], secret
            )
    finally:
        await harness.close()


async def test_paying_in_the_sandbox_credits_our_daemon_exactly_once(
    aiohttp_server, settings, store, webhooks
) -> None:
    user = await register(store, "4a1:2b3c:4d5e:6f70:8192:a3b4:c5d6:e7f8")
    daemon = await aiohttp_server(build_app(settings, store, webhooks))
    endpoint = endpoint_at(str(daemon.make_url("/webhooks/stripe")))
    harness = await start_sandbox(aiohttp_server, sandbox_config(None, endpoints=(endpoint,)))
    try:
        session = await harness.new_session(
            client_reference_id=user.sid,
            metadata={"sid": user.sid},
            payment_intent_data={"metadata": {"sid": user.sid}},
        )
        await open_checkout(store, user.sid, session.id, 1000)
        await harness.pay(session.url)
        deliveries = await harness.settled_deliveries(3)
        assert {d["status"] for d in deliveries} == {"succeeded"}
        assert await balance_of(store, user.sid) == 1000

        completed = harness.event_id("checkout.session.completed")
        await harness.control(f"/_sandbox/events/{completed}/resend")
        await harness.settled_deliveries(4)
        assert await balance_of(store, user.sid) == 1000
    finally:
        await harness.close()


async def test_sessions_expire_on_their_own_when_the_clock_passes_expires_at(
    clocked_sandbox: Harness, clock: FakeClock, receiver: Receiver
) -> None:
    session = await clocked_sandbox.new_session(expires_at=int(clock.now) + 1800)
    clock.advance(1800)
    clocked_sandbox.wake_clock()
    await wait_for_types(receiver, "checkout.session.expired")
    assert clocked_sandbox.engine.state.sessions[session.id]["status"] == "expired"
    assert receiver.received[0].event["request"]["id"] is None


async def test_bank_payments_settle_on_their_own_when_configured(
    aiohttp_server, receiver: Receiver
) -> None:
    harness = await start_sandbox(aiohttp_server, sandbox_config(receiver.url, async_settle_s=0))
    try:
        session = await harness.new_session()
        await harness.pay_by_bank(session.url)
        await wait_for_types(receiver, "checkout.session.async_payment_succeeded")
    finally:
        await harness.close()


async def test_a_restart_keeps_sessions_keys_and_owed_deliveries(
    aiohttp_server, tmp_path: Path, receiver: Receiver
) -> None:
    state_file = tmp_path / "sandbox" / "state.json"
    receiver.script = [500, 500, 500]
    config = sandbox_config(receiver.url, state_file=state_file, retry_delays_s=(0.2, 0.2, 0.2))
    first = await start_sandbox(aiohttp_server, config)
    created = await first.sdk.v1.checkout.sessions.create_async(
        session_params(), {"idempotency_key": "order-1"}
    )
    saved = json.loads(state_file.read_text())  # the answer is saved with the change, not after
    assert saved["idempotency"]["order-1"]["status"] == 200
    assert created.id in saved["sessions"]
    await first.sdk.v1.checkout.sessions.expire_async(created.id)
    await wait_until_async(
        _has_attempts(first, 1), timeout=10, what="the first delivery attempt fails"
    )
    await first.close()
    await first.app.shutdown()
    await first.app.cleanup()
    attempts_before = len(receiver.received)
    assert state_file.stat().st_mode & 0o777 == 0o600

    second = await start_sandbox(
        aiohttp_server, sandbox_config(receiver.url, state_file=state_file)
    )
    try:
        again = await second.sdk.v1.checkout.sessions.create_async(
            session_params(), {"idempotency_key": "order-1"}
        )
        assert again.id == created.id  # the key's first answer survived the restart
        retrieved = await second.sdk.v1.checkout.sessions.retrieve_async(created.id)
        assert retrieved.status == "expired"
        [delivery] = await second.settled_deliveries(1)
        assert delivery["status"] == "succeeded"
        assert len(receiver.received) > attempts_before  # the new process kept retrying
        assert receiver.received[-1].event["type"] == "checkout.session.expired"
    finally:
        await second.close()


def _has_attempts(harness: Harness, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        deliveries = list(harness.engine.state.deliveries.values())
        return bool(deliveries) and len(deliveries[0]["attempts"]) >= count

    return check


async def test_a_hanging_endpoint_times_out_and_never_blocks_the_api(aiohttp_server) -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response()

    hold = web.Application()
    hold.router.add_post("/hook", hang)
    server = await aiohttp_server(hold)
    endpoint = endpoint_at(str(server.make_url("/hook")))
    harness = await start_sandbox(
        aiohttp_server,
        sandbox_config(None, endpoints=(endpoint,), attempt_timeout_s=0.3, retry_delays_s=()),
    )
    try:
        checkout_id = await one_expired_event(harness)
        retrieved = await harness.sdk.v1.checkout.sessions.retrieve_async(checkout_id)
        assert retrieved.status == "expired"  # answered while the delivery hangs
        [delivery] = await harness.settled_deliveries(1)
        assert delivery["status"] == "failed"
        assert "timed out" in delivery["attempts"][0]["error"]
    finally:
        release.set()
        await harness.close()


async def test_events_are_forgotten_after_30_days_like_stripes(
    clocked_sandbox: Harness, clock: FakeClock
) -> None:
    await one_expired_event(clocked_sandbox)
    await clocked_sandbox.settled_deliveries(1)
    clock.advance(30 * 86400 + 1)
    clocked_sandbox.wake_clock()

    async def forgotten() -> bool:
        state = clocked_sandbox.engine.state
        return not state.events and not state.deliveries

    await wait_until_async(forgotten, timeout=10, what="the old event is dropped")
    listed = await clocked_sandbox.sdk.v1.events.list_async()
    assert listed.data == []
