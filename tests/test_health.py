"""GET /health and /ready, and the delivery-retention task that runs with the app."""

from __future__ import annotations

import time
from functools import partial

from hero_onboarding import __version__
from hero_onboarding.config import Secret
from hero_onboarding.payments.stripe_provider import StripeWebhooks
from hero_onboarding.store import Store, deliveries
from hero_onboarding.store.deliveries import Delivery
from tests.conftest import SIGNING_SECRET, build_app
from tests.waiting import wait_until_async


async def test_health_names_the_service_and_version(client):
    resp = await client.get("/health")
    assert resp.status == 200
    assert await resp.json() == {
        "status": "ok",
        "service": "hero_onboarding",
        "version": __version__,
    }


async def test_ready_when_the_database_answers(client):
    resp = await client.get("/ready")
    assert (resp.status, await resp.json()) == (200, {"status": "ready"})


async def test_not_ready_when_the_database_is_gone(aiohttp_client, settings):
    store = await Store.open(settings.db_path)
    client = await aiohttp_client(
        build_app(settings, store, StripeWebhooks([Secret(SIGNING_SECRET)]))
    )
    await store.close()
    resp = await client.get("/ready")
    assert resp.status == 503
    assert (await resp.json())["status"] == "unavailable"


async def test_old_deliveries_are_pruned_when_the_app_starts(aiohttp_client, settings, store):
    now = time.time()
    old = int(now) - (settings.delivery_retention_days + 1) * 86400
    for received_at in (old, int(now)):
        await store.write(
            partial(deliveries.record, delivery=Delivery(received_at, "stripe", False, "rejected"))
        )
    await aiohttp_client(
        build_app(settings, store, StripeWebhooks([Secret(SIGNING_SECRET)]), clock=lambda: now)
    )

    async def only_the_recent_one_left() -> bool:
        return [d.received_at for d in await store.read(deliveries.page)] == [int(now)]

    await wait_until_async(only_the_recent_one_left, timeout=5, what="the old delivery is pruned")
