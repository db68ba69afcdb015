"""`/v1/webhook_endpoints` in the sandbox, through the official SDK, and what it delivers.

Every answer passes the schema hook of tests/sandbox_kit.py (webhook_endpoint and
deleted_webhook_endpoint from Stripe's spec), asserted empty when each harness closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final, cast

import pytest
import stripe
from aiohttp import web
from stripe import RequestOptions
from stripe.params import WebhookEndpointCreateParams

from hero_onboarding.payments.base import EventKind
from hero_onboarding.payments.stripe_api import API_VERSION, HANDLED_EVENT_TYPES
from hero_onboarding.payments.stripe_provider import StripeWebhooks
from hero_onboarding.primitives import Secret
from hero_onboarding.sandbox.endpoint_store import MAX_ENDPOINTS
from hero_onboarding.sandbox.state import SandboxState
from tests.conftest import sandbox_config, start_sandbox
from tests.sandbox_kit import Harness, Receiver, wait_for_types

OLDER_VERSION: Final = "2026-07-29.dahlia"  # in the spec's enum, older than the SDK's


@pytest.fixture
async def bare(aiohttp_server) -> AsyncIterator[Harness]:
    """A sandbox with no configured endpoints: only what the API registers gets deliveries."""
    harness = await start_sandbox(aiohttp_server, sandbox_config(None))
    yield harness
    await harness.close()
    assert harness.schema_failures == []


async def receiver_at(aiohttp_server) -> Receiver:
    recording = Receiver()
    app = web.Application()
    app.router.add_post("/hook", recording.handle)
    server = await aiohttp_server(app)
    recording.url = str(server.make_url("/hook"))
    return recording


def endpoint_params(
    url: str = "https://shop.example/webhooks/stripe", **extra: Any
) -> WebhookEndpointCreateParams:
    """An endpoint's create params; `extra` is not type-checked, so it may be bad on purpose."""
    return cast(
        "WebhookEndpointCreateParams",
        {"url": url, "enabled_events": list(HANDLED_EVENT_TYPES), **extra},
    )


async def test_create_retrieve_update_list_delete_as_stripe_does(bare: Harness) -> None:
    endpoints = bare.sdk.v1.webhook_endpoints
    created = await endpoints.create_async(
        endpoint_params(
            api_version=API_VERSION,
            description="hero-onboarding credits",
            metadata={"owner": "ops", "tier": "gold"},
        )
    )
    assert created.id.startswith("we_")
    assert created.secret is not None
    assert created.secret.startswith("whsec_")
    assert len(created.secret) > 30
    assert created.object == "webhook_endpoint"
    assert (created.status, created.livemode, created.application) == ("enabled", False, None)
    assert created.api_version == API_VERSION
    assert created.enabled_events == list(HANDLED_EVENT_TYPES)
    assert created.metadata.to_dict() == {"owner": "ops", "tier": "gold"}
    assert list(created.to_dict())[:2] == ["id", "object"]
    assert list(created.to_dict())[-3:] == ["secret", "status", "url"]  # Stripe's order

    retrieved = await endpoints.retrieve_async(created.id)
    assert "secret" not in retrieved  # only the create answer shows it
    assert retrieved.url == created.url
    assert retrieved.description == "hero-onboarding credits"

    updated = await endpoints.update_async(
        created.id,
        {
            "enabled_events": ["checkout.session.completed"],
            "description": "",
            "disabled": True,
            "metadata": {"tier": "", "team": "billing"},
        },
    )
    assert updated.enabled_events == ["checkout.session.completed"]
    assert updated.description is None  # "" unsets it
    assert updated.status == "disabled"
    assert updated.metadata.to_dict() == {"owner": "ops", "team": "billing"}  # merged
    assert updated.api_version == API_VERSION
    assert "secret" not in updated
    enabled = await endpoints.update_async(created.id, {"disabled": False, "metadata": ""})
    assert enabled.status == "enabled"
    assert enabled.metadata.to_dict() == {}

    listed = await endpoints.list_async()
    assert [e.id for e in listed.data] == [created.id]
    assert listed.url == "/v1/webhook_endpoints"

    deleted = await endpoints.delete_async(created.id)
    assert (deleted.id, deleted.deleted) == (created.id, True)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await endpoints.retrieve_async(created.id)
    assert missing.value.http_status == 404
    assert missing.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError):
        await endpoints.delete_async(created.id)
    assert bare.engine.state.webhook_endpoints == {}
    assert bare.engine.state.webhook_secrets == {}


async def test_lists_page_newest_first_and_auto_paging_sees_every_one(bare: Harness) -> None:
    ids = [
        (await bare.sdk.v1.webhook_endpoints.create_async(endpoint_params(f"https://x.example/{n}"))).id
        for n in range(5)
    ]  # fmt: skip
    first = await bare.sdk.v1.webhook_endpoints.list_async({"limit": 2})
    assert [e.id for e in first.data] == ids[::-1][:2]
    assert first.has_more
    seen = [e.id async for e in first.auto_paging_iter()]
    assert seen == ids[::-1]
    after = await bare.sdk.v1.webhook_endpoints.list_async({"starting_after": ids[1]})
    assert [e.id for e in after.data] == [ids[0]]
    assert not after.has_more


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        (endpoint_params(enabled_events=["charge.teleported"]), "enabled_events[0]", None),
        (endpoint_params(api_version="2099-01-01"), "api_version", None),
        (endpoint_params(url="not a url"), "url", "url_invalid"),
        ({"enabled_events": ["*"]}, "url", "parameter_missing"),
        ({"url": "https://x.example/hook"}, "enabled_events", "parameter_missing"),
        (endpoint_params(secret="whsec_mine"), "secret", "parameter_unknown"),
        (endpoint_params(metadata={"k" * 41: "v"}), f"metadata[{'k' * 41}]", None),
        (endpoint_params(expand=["application"]), "expand[0]", None),
    ],
)
async def test_bad_creates_get_stripes_error_and_store_nothing(
    bare: Harness, params: dict, param: str, code: str | None
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:  # bad params on purpose:
        await bare.sdk.v1.webhook_endpoints.create_async(params)  # type: ignore[arg-type]
    assert refused.value.http_status == 400
    assert refused.value.param == param
    assert refused.value.code == code
    assert bare.engine.state.webhook_endpoints == {}


async def test_api_versions_of_the_spec_and_the_sdks_newer_one_are_accepted(bare: Harness) -> None:
    for version in (OLDER_VERSION, API_VERSION, "2020-08-27"):
        created = await bare.sdk.v1.webhook_endpoints.create_async(
            endpoint_params(api_version=version)
        )
        assert created.api_version == version
    plain = await bare.sdk.v1.webhook_endpoints.create_async(endpoint_params())
    assert plain.api_version is None  # the account's default


async def test_an_endpoints_api_version_cannot_be_updated(bare: Harness) -> None:
    created = await bare.sdk.v1.webhook_endpoints.create_async(endpoint_params())
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await bare.sdk.v1.webhook_endpoints.update_async(
            created.id,
            {"api_version": API_VERSION},  # type: ignore[arg-type]  # not updatable, on purpose
        )
    assert (refused.value.param, refused.value.code) == ("api_version", "parameter_unknown")
    with pytest.raises(stripe.InvalidRequestError) as empty:
        await bare.sdk.v1.webhook_endpoints.update_async(
            created.id,
            {"enabled_events": ""},  # type: ignore[arg-type]  # what unsetting sends
        )
    assert empty.value.param == "enabled_events"
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        await bare.sdk.v1.webhook_endpoints.update_async("we_nope", {"disabled": True})
    assert unknown.value.http_status == 404
    assert (await bare.sdk.v1.webhook_endpoints.retrieve_async(created.id)).status == "enabled"


async def test_a_replayed_create_answers_the_same_endpoint_and_secret(bare: Harness) -> None:
    options: RequestOptions = {"idempotency_key": "setup-1"}
    first = await bare.sdk.v1.webhook_endpoints.create_async(endpoint_params(), options)
    again = await bare.sdk.v1.webhook_endpoints.create_async(endpoint_params(), options)
    assert (again.id, again.secret) == (first.id, first.secret)
    assert list(bare.engine.state.webhook_endpoints) == [first.id]


async def test_stripes_limit_of_16_endpoints(bare: Harness) -> None:
    for n in range(MAX_ENDPOINTS):
        await bare.sdk.v1.webhook_endpoints.create_async(endpoint_params(f"https://x.example/{n}"))
    with pytest.raises(stripe.InvalidRequestError, match="maximum of 16"):
        await bare.sdk.v1.webhook_endpoints.create_async(endpoint_params())


async def test_each_endpoint_gets_its_events_signed_with_its_secret_in_its_version(
    bare: Harness, aiohttp_server
) -> None:
    expiries, everything = await receiver_at(aiohttp_server), await receiver_at(aiohttp_server)
    stale = await receiver_at(aiohttp_server)
    endpoints = bare.sdk.v1.webhook_endpoints
    narrow = await endpoints.create_async(
        {
            "url": expiries.url,
            "enabled_events": ["checkout.session.expired"],
            "api_version": API_VERSION,
        }
    )
    wide = await endpoints.create_async({"url": everything.url, "enabled_events": ["*"]})
    # A version the sandbox does not render: kept, but never sent one version's objects
    # labelled as another's.
    await endpoints.create_async(
        {"url": stale.url, "enabled_events": ["*"], "api_version": OLDER_VERSION}
    )
    session = await bare.new_session()
    await bare.pay(session.url)
    expired = await bare.new_session()
    await bare.sdk.v1.checkout.sessions.expire_async(expired.id)
    await wait_for_types(everything, "checkout.session.completed", "checkout.session.expired")
    await wait_for_types(expiries, "checkout.session.expired")
    await bare.settled_deliveries(len(bare.engine.state.events) + 1)  # wide: all; narrow: 1

    assert expiries.types() == ["checkout.session.expired"]
    assert set(everything.types()) >= {"checkout.session.completed", "payment_intent.succeeded"}
    narrow_delivery = expiries.received[0]
    header = narrow_delivery.headers["Stripe-Signature"]
    event = stripe.Webhook.construct_event(narrow_delivery.body, header, narrow.secret)
    assert event.api_version == API_VERSION  # what that endpoint asked for
    assert event.data.object.id == expired.id
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(narrow_delivery.body, header, wide.secret)
    stored = bare.engine.state.events[event.id]
    assert stored["api_version"] == API_VERSION  # /v1/events keeps the account's version

    paid = everything.of_type("checkout.session.completed")[0]
    assert wide.secret is not None
    parsed = StripeWebhooks([Secret(wide.secret)]).parse_webhook(paid.body.encode(), paid.headers)
    assert (parsed.kind, parsed.checkout_id) == (EventKind.PAID, session.id)
    assert paid.event["api_version"] == API_VERSION  # no api_version: the account's default
    deliveries = await bare.deliveries(event=event.id)
    assert {d["webhook_endpoint"] for d in deliveries} == {narrow.id, wide.id}
    assert stale.received == []


async def test_disabled_and_deleted_endpoints_get_nothing_more(
    bare: Harness, aiohttp_server
) -> None:
    kept, dropped = await receiver_at(aiohttp_server), await receiver_at(aiohttp_server)
    endpoints = bare.sdk.v1.webhook_endpoints
    await endpoints.create_async({"url": kept.url, "enabled_events": ["checkout.session.expired"]})
    gone = await endpoints.create_async(
        {"url": dropped.url, "enabled_events": ["checkout.session.expired"]}
    )
    first = await bare.new_session()
    await bare.sdk.v1.checkout.sessions.expire_async(first.id)
    await bare.settled_deliveries(2)
    assert len(dropped.received) == 1

    await endpoints.update_async(gone.id, {"disabled": True})
    second = await bare.new_session()
    await bare.sdk.v1.checkout.sessions.expire_async(second.id)
    await bare.settled_deliveries(3)
    await endpoints.delete_async(gone.id)
    third = await bare.new_session()
    await bare.sdk.v1.checkout.sessions.expire_async(third.id)
    await bare.settled_deliveries(4)

    assert len(dropped.received) == 1
    assert [r.event["data"]["object"]["id"] for r in kept.received] == [
        first.id,
        second.id,
        third.id,
    ]


async def test_endpoints_and_secrets_survive_the_state_file(bare: Harness) -> None:
    created = await bare.sdk.v1.webhook_endpoints.create_async(endpoint_params())
    reloaded = SandboxState.from_json(bare.engine.state.to_json())
    assert reloaded.webhook_endpoints[created.id]["url"] == created.url
    assert reloaded.webhook_secrets[created.id] == created.secret
    assert "secret" not in reloaded.webhook_endpoints[created.id]
