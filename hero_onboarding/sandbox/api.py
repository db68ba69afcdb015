"""Stripe's REST endpoints that hero-onboarding uses, under /v1 (more in money_api.py)."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from .checkout import EXPANDABLE, check_expand
from .keys import SANDBOX
from .middleware import executed, meta_of, read_params, stripe_json
from .params import Schema, checkout_session_create_schema, object_schema

ID: Final = {"type": "string", "maxLength": 5000}
METADATA: Final = {"type": "object", "additionalProperties": {"type": "string", "maxLength": 500}}
NOTHING: Final[frozenset[str]] = frozenset()  # what the sandbox expands on these objects
INT: Final = {"type": "integer"}
EXPAND: Final = {"type": "array", "items": ID}
CREATED: Final = {
    "anyOf": [
        {"type": "object", "properties": {"gt": INT, "gte": INT, "lt": INT, "lte": INT}},
        INT,
    ]
}
PAGE: Final[dict[str, Schema]] = {
    "limit": INT,
    "starting_after": ID,
    "ending_before": ID,
    "expand": EXPAND,
}


RETRIEVE: Final = object_schema(expand=EXPAND)
LIST_SESSIONS: Final = object_schema(
    **PAGE,
    status={"type": "string", "enum": ["complete", "expired", "open"]},
    payment_intent=ID,
    created=CREATED,
)
LIST_LINE_ITEMS: Final = object_schema(**PAGE)
LIST_EVENTS: Final = object_schema(
    **PAGE,
    type=ID,
    types={"type": "array", "items": ID},
    created=CREATED,
    delivery_success={"type": "boolean"},
)
routes = web.RouteTableDef()


@routes.post("/v1/checkout/sessions")
async def create_session(request: web.Request) -> web.Response:
    params = await read_params(request, checkout_session_create_schema())
    sandbox = request.app[SANDBOX]
    session = sandbox.create_session(params)
    executed(request)
    return stripe_json(sandbox.render_session(session, params.get("expand", [])))


@routes.get("/v1/checkout/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    query = await read_params(request, LIST_SESSIONS)
    return stripe_json(request.app[SANDBOX].list_sessions(query))


@routes.get("/v1/checkout/sessions/{session}")
async def retrieve_session(request: web.Request) -> web.Response:
    query = await read_params(request, RETRIEVE)
    sandbox = request.app[SANDBOX]
    session = sandbox.session(request.match_info["session"])
    return stripe_json(sandbox.render_session(session, query.get("expand", [])))


@routes.get("/v1/checkout/sessions/{session}/line_items")
async def list_line_items(request: web.Request) -> web.Response:
    query = await read_params(request, LIST_LINE_ITEMS)
    return stripe_json(request.app[SANDBOX].line_items(request.match_info["session"], query))


@routes.post("/v1/checkout/sessions/{session}/expire")
async def expire_session(request: web.Request) -> web.Response:
    params = await read_params(request, RETRIEVE)
    check_expand(params.get("expand"), EXPANDABLE)
    sandbox = request.app[SANDBOX]
    session = sandbox.expire_session(request.match_info["session"], meta_of(request))
    executed(request)
    return stripe_json(sandbox.render_session(session, params.get("expand", [])))


@routes.get("/v1/payment_intents/{intent}")
async def retrieve_payment_intent(request: web.Request) -> web.Response:
    query = await read_params(request, RETRIEVE)
    sandbox = request.app[SANDBOX]
    intent = sandbox.payment_intent(request.match_info["intent"])
    return stripe_json(sandbox.render_payment_intent(intent, query.get("expand")))


@routes.get("/v1/events")
async def list_events(request: web.Request) -> web.Response:
    query = await read_params(request, LIST_EVENTS)
    check_expand(query.get("expand"), NOTHING)
    return stripe_json(request.app[SANDBOX].list_events(query))


@routes.get("/v1/events/{id}")
async def retrieve_event(request: web.Request) -> web.Response:
    check_expand((await read_params(request, RETRIEVE)).get("expand"), NOTHING)
    return stripe_json(request.app[SANDBOX].event(request.match_info["id"]))
