"""GET /metrics and the middleware that times every request."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import generate_latest

from .keys import METRICS, SETTINGS
from .peers import client_address, within

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
        request.app[METRICS].request_seconds.labels(route, request.method).observe(
            time.perf_counter() - started
        )


async def metrics_page(request: web.Request) -> web.Response:
    """The registry as text, for scrapers in --metrics-networks only (counts are not public)."""
    allowed = request.app[SETTINGS].metrics_allowed_networks
    if not within(client_address(request), allowed):
        return web.Response(status=403, text="metrics are not served to this address\n")
    return web.Response(
        body=generate_latest(request.app[METRICS].registry),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )
