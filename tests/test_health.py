"""GET /health and /ready, and the delivery-retention task that runs with the app."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from functools import partial

import apsw

from hero_onboarding import __version__
from hero_onboarding.payments.stripe_provider import StripeWebhooks
from hero_onboarding.primitives import Secret
from hero_onboarding.store import Store, deliveries
from hero_onboarding.store.deliveries import Delivery
from tests.conftest import SIGNING_SECRET, build_app
from tests.waiting import wait_until_async


async def test_health_names_the_service_version_and_process(client):
    resp = await client.get("/health")
    assert resp.status == 200
    assert await resp.json() == {
        "status": "ok",
        "service": "hero_onboarding",
        "version": __version__,
        "pid": os.getpid(),  # so --start knows the answer came from the daemon it started
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


async def test_not_ready_while_writes_are_stuck_and_ready_again_after(aiohttp_client, settings):
    """A lock held elsewhere (another process, a backup) stalls writes: /ready must say so."""
    store = await Store.open(settings.db_path, busy_timeout_ms=30_000, write_timeout_s=0.3)
    client = await aiohttp_client(
        build_app(settings, store, StripeWebhooks([Secret(SIGNING_SECRET)]))
    )
    blocker = apsw.Connection(str(settings.db_path))
    blocker.execute("BEGIN IMMEDIATE")
    delivery = Delivery(1, "stripe", False, "rejected")
    stuck = asyncio.ensure_future(store.write(partial(deliveries.record, delivery=delivery)))

    async def unready() -> bool:
        return (await client.get("/ready")).status == 503

    await wait_until_async(unready, timeout=10, what="/ready notices the stuck writer")
    body = await (await client.get("/ready")).json()
    assert "writes have not completed" in body["detail"]
    with contextlib.suppress(TimeoutError):
        await stuck
    blocker.execute("ROLLBACK")
    blocker.close()

    async def ready_again() -> bool:
        await store.write(lambda conn: None)
        return (await client.get("/ready")).status == 200

    await wait_until_async(ready_again, timeout=10, what="/ready recovers")
    await store.close()
