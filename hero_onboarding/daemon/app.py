"""The public daemon's application factory: everything it needs comes in as arguments."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from types import MappingProxyType
from typing import Final

import apsw
from aiohttp import web

from ..config import Settings
from ..mycelium.messages import MessageSender
from ..mycelium.proof import public_key_of
from ..payments.base import PaymentProvider, WebhookParser
from ..store import Store, deliveries, logins, web_sessions
from . import login, purchase
from .guards import (
    FORM_MAX_BYTES,
    csrf_middleware,
    encoded_bodies_middleware,
    page_errors_middleware,
    unguarded_routes_middleware,
)
from .health import health, ready
from .keyed_locks import KeyedLocks
from .keys import (
    CHECKOUT_LOCKS,
    CHECKOUTS,
    CLOCK,
    LOGIN_KEY,
    LOGIN_PUBLIC_KEY,
    MESSENGER,
    METRICS,
    RECENT_ASKS,
    SETTINGS,
    STORE,
    WEBHOOK_PARSERS,
)
from .metrics import new_metrics
from .metrics_routes import metrics_page, timing_middleware
from .pages import setup_pages
from .provider_pages import DaemonPageHost
from .recent import RecentAsks
from .webhooks import setup_webhook_sampling, webhook

log = logging.getLogger(__name__)

PRUNE_INTERVAL_S: Final = 3600.0
PRUNE_BATCH: Final = 5000
# Challenges stay a day past expiry: rate limits count them for an hour, people ask about them.
LOGIN_GRACE_S: Final = 86400
# The return page asks the provider about one checkout at most this often, however it is
# reloaded; the webhook credits the payment regardless.
PROVIDER_ASK_INTERVAL_S: Final = 2.0


def create_app(
    settings: Settings,
    store: Store,
    webhooks: Sequence[WebhookParser],
    *,
    checkouts: PaymentProvider,
    messenger: MessageSender,
    login_key: bytes,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """Build the public app. The caller owns `store`, `checkouts` and `messenger`'s connections.

    `checkouts` opens hosted payment pages and brings any pages of its own (the stub's); each
    of `webhooks` is served at /webhooks/{its name}, and with none (the stub provider and no
    signing key) there is no webhook endpoint. Both come from payments.providers, so the app
    never knows which provider it sells through. `messenger` carries login codes (a Mycelium
    node, or the sandbox outbox); `login_key` is the server's x25519 private key for key proofs.
    """
    parsers = {parser.name: parser for parser in webhooks}
    if len(parsers) != len(webhooks):
        raise ValueError("two webhook parsers share a name: " + ", ".join(parsers))
    app = web.Application(
        # What request.read()/post() accept: our forms. The webhook reads with its own bound.
        client_max_size=FORM_MAX_BYTES,
        middlewares=[
            unguarded_routes_middleware,  # webhooks: straight to their handler, timed
            timing_middleware,
            encoded_bodies_middleware,
            page_errors_middleware,
            csrf_middleware,
        ],
    )
    app[SETTINGS] = settings
    app[STORE] = store
    app[CHECKOUTS] = checkouts
    app[METRICS] = new_metrics()
    app[RECENT_ASKS] = RecentAsks(PROVIDER_ASK_INTERVAL_S)
    app[CHECKOUT_LOCKS] = KeyedLocks()
    app[CLOCK] = clock
    app[MESSENGER] = messenger
    app[LOGIN_KEY] = login_key
    app[LOGIN_PUBLIC_KEY] = public_key_of(login_key).hex()
    setup_pages(app)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics_page)
    app[WEBHOOK_PARSERS] = MappingProxyType(parsers)
    if parsers:
        setup_webhook_sampling(app)
        # Only the names served match: another provider's path is aiohttp's own 404.
        names = "|".join(re.escape(name) for name in parsers)
        app.router.add_post(f"/webhooks/{{provider:{names}}}", webhook)
    app.add_routes(login.routes)
    app.add_routes(purchase.routes)
    app.add_routes(checkouts.routes(DaemonPageHost()))
    app.cleanup_ctx.append(_pruning)
    return app


async def _pruning(app: web.Application) -> AsyncIterator[None]:
    """Hourly, while the app runs: old delivery records, dead login challenges and sessions."""
    task = asyncio.create_task(_prune_forever(app), name="prune")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _prune_forever(app: web.Application) -> None:
    settings, store, clock = app[SETTINGS], app[STORE], app[CLOCK]
    while True:
        now = int(clock())
        jobs = (
            (
                f"webhook deliveries older than {settings.delivery_retention_days} days",
                partial(
                    deliveries.prune,
                    received_before=now - settings.delivery_retention_days * 86400,
                    limit=PRUNE_BATCH,
                ),
            ),
            (
                "expired login challenges",
                partial(logins.prune, expired_before=now - LOGIN_GRACE_S, limit=PRUNE_BATCH),
            ),
            (
                "expired web sessions",
                partial(web_sessions.prune, expired_before=now, limit=PRUNE_BATCH),
            ),
        )
        for what, job in jobs:
            try:
                removed = await _prune_all(store, job)
                if removed:
                    log.info("pruned %d %s", removed, what)
            except Exception as exc:
                log.error("pruning %s failed: %s", what, exc)
        await asyncio.sleep(PRUNE_INTERVAL_S)


async def _prune_all(store: Store, job: Callable[[apsw.Connection], int]) -> int:
    """Run a bounded prune job until it removes less than a batch (short write locks)."""
    removed = 0
    while True:
        batch = await store.write(job)
        removed += batch
        if batch < PRUNE_BATCH:
            return removed
