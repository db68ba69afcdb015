"""The provider seam: one factory builds what both daemons pay with; the app names no provider.

A new provider (ClickPesa) is its module in payments/, a ProviderName and one REGISTRY line;
these tests pin what that buys: its webhook at /webhooks/{name}, its pages only while it sells,
both daemons configured alike, everything closed once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hero_onboarding.config import ProviderName, Secrets, Settings, load_settings
from hero_onboarding.daemon.app import create_app
from hero_onboarding.mycelium.messages import SandboxOutbox
from hero_onboarding.payments.base import (
    Checkout,
    CheckoutRequest,
    EventKind,
    InvalidSignature,
    PageHost,
    ProviderError,
    ProviderEvent,
    ProviderParts,
)
from hero_onboarding.payments.providers import REGISTRY, build_providers
from hero_onboarding.payments.stripe_provider import StripeCheckouts
from hero_onboarding.primitives import Secret, StartupError
from hero_onboarding.store import Store, deliveries
from tests.conftest import SERVER_LOGIN_KEY, SIGNING_SECRET, build_app
from tests.sandbox_kit import API_KEY
from tests.test_payment_flow import broken_api


def settings_for(tmp_path: Path, **flags: str) -> Settings:
    return load_settings({"HOME": str(tmp_path)}, {"data_dir": str(tmp_path / "data"), **flags})


ALL_SECRETS = Secrets(
    webhook_signing_keys=(Secret(SIGNING_SECRET),), stripe_secret_key=Secret(API_KEY)
)


async def test_every_provider_name_is_registered_and_builds_parts_of_its_own_name(
    tmp_path: Path,
) -> None:
    assert set(REGISTRY) == set(ProviderName)
    for name in ProviderName:
        settings = settings_for(tmp_path, provider=name.value, mode="sandbox")
        providers = build_providers(settings, ALL_SECRETS)
        try:
            assert providers.checkouts.name == name
            for parts in providers.parts.values():
                for part in (parts.checkouts, parts.webhooks, parts.reconciler):
                    assert part is None or part.name in set(ProviderName)
            assert {p.name for p in providers.webhooks} == {"stripe"}
        finally:
            await providers.close()


async def test_stripe_without_its_key_cannot_sell_and_leaves_nothing_to_reconcile(
    tmp_path: Path,
) -> None:
    providers = build_providers(settings_for(tmp_path), Secrets())
    with pytest.raises(StartupError, match="--provider=stripe needs STRIPE_SANDBOX_SECRET_KEY"):
        _ = providers.checkouts
    assert providers.webhooks == ()
    assert providers.reconciler is None
    await providers.close()


async def test_under_the_stub_stripe_still_takes_webhooks_and_can_be_reconciled(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, provider="stub", mode="sandbox")
    providers = build_providers(settings, ALL_SECRETS)
    try:
        assert providers.checkouts.name == "stub"
        [parser] = providers.webhooks
        assert parser.name == "stripe"
        assert providers.reconciler is not None
        assert providers.reconciler.name == "stripe"  # so the admin runs no schedule for it
    finally:
        await providers.close()


async def test_both_daemons_get_the_configured_provider_timeout(tmp_path: Path) -> None:
    """The admin daemon's reconciler is built by the same factory, so --provider-timeout-s
    bounds its requests too (it used to keep the SDK client's 20 s)."""
    async with broken_api("stall") as url:
        settings = settings_for(tmp_path, stripe_api_base=url, provider_timeout_s="1")
        providers = build_providers(settings, Secrets(stripe_secret_key=Secret(API_KEY)))
        try:
            assert isinstance(providers.reconciler, StripeCheckouts)
            assert providers.reconciler is providers.checkouts  # one client, one timeout
            started = time.monotonic()
            with pytest.raises(ProviderError):
                await providers.reconciler.settled_since(0)
            # Three tries of 1 s and the SDK's backoff; 20 s a try would take a minute.
            assert time.monotonic() - started < 12
        finally:
            await providers.close()


class Counted:
    name = "stripe"

    def __init__(self, closed: list[str], fails: bool = False) -> None:
        self.closed, self.fails = closed, fails

    async def close(self) -> None:
        self.closed.append(self.name)
        if self.fails:
            raise RuntimeError("boom")


async def test_closing_closes_each_owned_client_once_even_when_one_fails(tmp_path: Path) -> None:
    closed: list[str] = []
    shared, failing = Counted(closed), Counted(closed, fails=True)
    failing.name = "stub"
    registry = {
        ProviderName.STRIPE: lambda s, k: ProviderParts(owned=(shared, shared)),
        ProviderName.STUB: lambda s, k: ProviderParts(owned=(failing,)),
    }
    providers = build_providers(settings_for(tmp_path), Secrets(), registry)
    await providers.close()
    assert sorted(closed) == ["stripe", "stub"]


async def test_an_unregistered_provider_stops_boot(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="--provider=stub is not registered"):
        build_providers(
            settings_for(tmp_path, provider="stub", mode="sandbox"),
            Secrets(),
            {ProviderName.STRIPE: REGISTRY[ProviderName.STRIPE]},
        )


# --- the app side: routes come from whatever providers it is given ---


class OtherParser:
    """A second provider's webhook parser, as ClickPesa's will be."""

    name = "other"

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        if headers.get("X-Other-Signature") != "good":
            raise InvalidSignature("bad other signature")
        return ProviderEvent(
            provider=self.name,
            kind=EventKind.IGNORED,
            event_id="other-1",
            raw_type="other.ping",
            note="nothing to do",
        )


class PagedProvider:
    """A provider with a page of its own: served only while the app sells through it."""

    name = "other"

    def routes(self, host: PageHost) -> Sequence[web.AbstractRouteDef]:
        async def page(request: web.Request) -> web.StreamResponse:
            return web.Response(text=f"paying as {await host.buyer(request)}")

        return [web.get("/payment/other/page", page)]

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        raise NotImplementedError  # nothing is sold in these tests

    async def retrieve_checkout(self, checkout_id: str) -> ProviderEvent | None:
        raise NotImplementedError

    async def close(self) -> None:
        pass


async def test_each_webhook_parser_is_served_under_its_name(
    settings: Settings, store: Store, webhooks
) -> None:
    app = create_app(
        settings,
        store,
        (webhooks, OtherParser()),
        checkouts=PagedProvider(),
        messenger=SandboxOutbox(),
        login_key=SERVER_LOGIN_KEY,
    )
    async with TestClient(TestServer(app)) as client:
        signed = {"X-Other-Signature": "good"}
        async with client.post("/webhooks/other", data=b"{}", headers=signed) as answer:
            assert answer.status == 200
            assert (await answer.json())["outcome"] == "ignored"
        async with client.post("/webhooks/other", data=b"{}") as answer:
            assert answer.status == 401
            assert (await answer.json())["error"] == "bad other signature"
        async with client.post("/webhooks/stripe", data=b"{}") as answer:
            assert answer.status == 401  # Stripe's parser, at the path Stripe knows
            assert "Stripe-Signature" in (await answer.json())["error"]
        async with client.post("/webhooks/nobody", data=b"{}") as answer:
            assert answer.status == 404
        rows = await store.read(lambda conn: deliveries.page(conn))
    assert sorted((row.provider, row.outcome) for row in rows) == [
        ("other", "ignored"),
        ("other", "rejected"),
        ("stripe", "rejected"),
    ]


async def test_without_parsers_there_is_no_webhook_endpoint(
    settings: Settings, store: Store, aiohttp_client
) -> None:
    client = await aiohttp_client(build_app(settings, store, None))
    async with client.post("/webhooks/stripe", data=b"{}") as answer:
        assert answer.status == 404


async def test_a_providers_pages_are_served_only_while_the_app_sells_through_it(
    settings: Settings, store: Store, webhooks, aiohttp_client
) -> None:
    stub_shop = await aiohttp_client(build_app(settings, store, webhooks))  # the stub sells
    other_shop = await aiohttp_client(
        build_app(settings, store, webhooks, checkouts=PagedProvider())
    )
    for client, served, absent in (
        (stub_shop, "/payment/stub/stub_cs_x", "/payment/other/page"),
        (other_shop, "/payment/other/page", "/payment/stub/stub_cs_x"),
    ):
        async with client.get(served, allow_redirects=False) as answer:
            assert answer.status == 303  # there, and it wants a logged-in buyer (PageHost.buyer)
            assert answer.headers["Location"] == "/"
        async with client.get(absent, allow_redirects=False) as answer:
            assert answer.status == 404
