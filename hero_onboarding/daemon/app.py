"""The public daemon's application factory: everything it needs comes in as arguments."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Final

from aiohttp import web

from ..config import Settings
from ..payments.base import WebhookParser
from ..store import Store, deliveries
from .health import health, ready
from .keys import CLOCK, SETTINGS, STORE, STRIPE
from .webhooks import stripe_webhook

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S: Final = 3600.0
PRUNE_BATCH: Final = 5000


def create_app(
    settings: Settings,
    store: Store,
    stripe_webhooks: WebhookParser,
    *,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """Build the public app. The caller owns `store` (opens it before, closes it after)."""
    app = web.Application(client_max_size=settings.webhook_max_bytes)
    app[SETTINGS] = settings
    app[STORE] = store
    app[STRIPE] = stripe_webhooks
    app[CLOCK] = clock
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_post("/webhooks/stripe", stripe_webhook)
    app.cleanup_ctx.append(_prune_deliveries)
    return app


async def _prune_deliveries(app: web.Application) -> AsyncIterator[None]:
    """Keep webhook_deliveries to the retention period, hourly, while the app runs."""
    task = asyncio.create_task(_prune_forever(app), name="prune-deliveries")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _prune_forever(app: web.Application) -> None:
    settings, store, clock = app[SETTINGS], app[STORE], app[CLOCK]
    while True:
        cutoff = int(clock()) - settings.delivery_retention_days * 86400
        try:
            removed = 0
            while True:
                batch = await store.write(
                    partial(deliveries.prune, received_before=cutoff, limit=PRUNE_BATCH)
                )
                removed += batch
                if batch < PRUNE_BATCH:
                    break
            if removed:
                log.info(
                    "pruned %d webhook deliveries older than %d days",
                    removed,
                    settings.delivery_retention_days,
                )
        except Exception as exc:
            log.error("pruning webhook deliveries failed: %s", exc)
        await asyncio.sleep(PRUNE_INTERVAL_S)
