"""Stripe's webhook endpoint API, `/v1/webhook_endpoints`: what `stripe-setup` talks to.

Requests are read against Stripe's own form schemas (endpoint_store.request_schemas) through
the same params/middleware layer as the rest of /v1, so unknown parameters, event types outside
Stripe's enum and bad api_versions get Stripe's errors, and POSTs honour Idempotency-Key. DELETE
is not covered by commit_middleware (Stripe ignores idempotency keys on it), so it saves itself.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl

from aiohttp import web

from .api import NOTHING, RETRIEVE
from .checkout import check_expand
from .endpoint_store import EndpointStore, is_metadata_cleared, request_schemas
from .forms import parse_pairs
from .keys import SANDBOX, SAVE
from .middleware import body_text, executed, read_params, stripe_json
from .params import object_schema

DELETE: Final = object_schema()

routes = web.RouteTableDef()


def _store(request: web.Request) -> EndpointStore:
    sandbox = request.app[SANDBOX]
    return EndpointStore(sandbox.state, sandbox.now)


@routes.post("/v1/webhook_endpoints")
async def create_endpoint(request: web.Request) -> web.Response:
    params = await read_params(request, request_schemas()["create"])
    check_expand(params.get("expand"), NOTHING)
    created = _store(request).create(params)
    executed(request)
    return stripe_json(created)


@routes.get("/v1/webhook_endpoints")
async def list_endpoints(request: web.Request) -> web.Response:
    query = await read_params(request, request_schemas()["list"])
    check_expand(query.get("expand"), NOTHING)
    return stripe_json(_store(request).list(query))


@routes.get("/v1/webhook_endpoints/{id}")
async def retrieve_endpoint(request: web.Request) -> web.Response:
    check_expand((await read_params(request, RETRIEVE)).get("expand"), NOTHING)
    return stripe_json(_store(request).retrieve(request.match_info["id"]))


@routes.post("/v1/webhook_endpoints/{id}")
async def update_endpoint(request: web.Request) -> web.Response:
    params = await read_params(request, request_schemas()["update"])
    check_expand(params.get("expand"), NOTHING)
    raw = parse_pairs(parse_qsl(await body_text(request), keep_blank_values=True))
    updated = _store(request).update(
        request.match_info["id"], params, clear_metadata=is_metadata_cleared(raw)
    )
    executed(request)
    return stripe_json(updated)


@routes.delete("/v1/webhook_endpoints/{id}")
async def delete_endpoint(request: web.Request) -> web.Response:
    await read_params(request, DELETE)
    deleted = _store(request).delete(request.match_info["id"])
    await request.app[SAVE]()
    return stripe_json(deleted)
