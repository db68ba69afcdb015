"""Test controls under /_sandbox: what Stripe does on its own time, done now on request.

Tests (and people demoing) use these instead of sleeping: resend an event, settle a delayed
payment, let a session reach its expiry, read the delivery log. They take the same API key as
/v1 and answer in the same JSON shapes.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from .api import ID, RETRIEVE
from .errors import invalid
from .keys import CONFIG, DISPATCHER, SANDBOX
from .middleware import executed, read_params, stripe_json
from .objects import list_object
from .params import object_schema

LIST_DELIVERIES: Final = object_schema(
    event=ID,
    endpoint=ID,
    status={"type": "string", "enum": ["failed", "pending", "succeeded"]},
)
RESEND: Final = object_schema(endpoint=ID)
SETTLE: Final = object_schema(outcome={"type": "string", "enum": ["failed", "succeeded"]})

routes = web.RouteTableDef()


@routes.get("/_sandbox/deliveries")
async def list_deliveries(request: web.Request) -> web.Response:
    """The delivery log, newest first: every attempt's time, HTTP status or error, duration."""
    query = await read_params(request, LIST_DELIVERIES)
    deliveries = [
        delivery
        for delivery in reversed(request.app[SANDBOX].state.deliveries.values())
        if query.get("event", delivery["event"]) == delivery["event"]
        and query.get("endpoint", delivery["endpoint"]) == delivery["endpoint"]
        and query.get("status", delivery["status"]) == delivery["status"]
    ]
    return stripe_json(list_object(deliveries, url="/_sandbox/deliveries", has_more=False))


@routes.get("/_sandbox/webhook_endpoints")
async def list_endpoints(request: web.Request) -> web.Response:
    endpoints = [
        {"url": endpoint.url, "enabled_events": list(endpoint.enabled_events)}
        for endpoint in request.app[CONFIG].endpoints
    ]
    return stripe_json(list_object(endpoints, url="/_sandbox/webhook_endpoints", has_more=False))


@routes.post("/_sandbox/events/{id}/resend")
async def resend_event(request: web.Request) -> web.Response:
    """Deliver an event again (Stripe's manual resend): a duplicate the receiver must absorb."""
    params = await read_params(request, RESEND)
    event = request.app[SANDBOX].event(request.match_info["id"])
    dispatcher = request.app[DISPATCHER]
    url = params.get("endpoint")
    if url is not None and not dispatcher.knows(url):
        raise invalid(f"No webhook endpoint is registered at {url[:200]}", param="endpoint")
    deliveries = dispatcher.resend(event, url)
    executed(request)
    return stripe_json(list_object(deliveries, url="/_sandbox/deliveries", has_more=False))


@routes.post("/_sandbox/checkout/sessions/{session}/settle")
async def settle(request: web.Request) -> web.Response:
    """Settle a delayed (bank) payment now, as its test account says or as `outcome` forces."""
    params = await read_params(request, SETTLE)
    session = request.app[SANDBOX].settle(request.match_info["session"], params.get("outcome"))
    executed(request)
    return stripe_json(session)


@routes.post("/_sandbox/checkout/sessions/{session}/expire")
async def reach_expiry(request: web.Request) -> web.Response:
    """Let an open session reach its expiry now (the event carries no request, as on Stripe)."""
    await read_params(request, RETRIEVE)
    session = request.app[SANDBOX].reach_expiry(request.match_info["session"])
    executed(request)
    return stripe_json(session)
