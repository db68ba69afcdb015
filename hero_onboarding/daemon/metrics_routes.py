"""GET /metrics and the middleware that times every request."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import generate_latest

from .keys import CLOCK, METRICS, SETTINGS, STORE
from .peers import client_address, within
from .reconcile_metrics import reconcile_exposition

# A label value per method a client can invent would grow the series without bound.
COUNTED_METHODS: Final = frozenset({"GET", "HEAD", "POST"})
FORWARDING_HEADERS: Final = ("X-Forwarded-For", "X-Real-IP", "Forwarded")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def timing_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Latency per route pattern (never the raw path: ids would make a series each)."""
    started = time.perf_counter()
    try:
        return await handler(request)
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        method = request.method if request.method in COUNTED_METHODS else "other"
        request.app[METRICS].request_seconds.labels(route, method).observe(
            time.perf_counter() - started
        )


async def metrics_page(request: web.Request) -> web.Response:
    """The registry as text, for scrapers in --metrics-networks only (counts are not public)."""
    settings = request.app[SETTINGS]
    proxied = settings.client_ip_header is None and any(
        header in request.headers for header in FORWARDING_HEADERS
    )
    if proxied or not within(client_address(request), settings.metrics_networks):
        # Behind a proxy that was not named in --client-ip-header, the peer is the proxy and
        # says nothing about the client: refuse rather than serve the internet as "localhost".
        return web.Response(status=403, text="metrics are not served to this address\n")
    runs = await reconcile_exposition(request.app[STORE], now=int(request.app[CLOCK]()))
    return web.Response(
        body=generate_latest(request.app[METRICS].registry) + runs,
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )
