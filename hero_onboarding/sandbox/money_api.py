"""Stripe's endpoints for money that moves after a payment: charges, refunds, disputes (/v1)."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from .api import CREATED, EXPAND, ID, INT, METADATA, NOTHING, PAGE, RETRIEVE
from .checkout import check_expand
from .keys import POKE, SANDBOX
from .middleware import executed, meta_of, read_params, stripe_json
from .objects import EVIDENCE_FIELDS
from .params import Schema, object_schema

REFUND_REASON: Final = {
    "type": "string",
    "enum": ["duplicate", "fraudulent", "requested_by_customer"],
}
CREATE_REFUND: Final = object_schema(
    amount=INT,
    charge=ID,
    payment_intent=ID,
    reason=REFUND_REASON,
    metadata=METADATA,
    expand=EXPAND,
)
EVIDENCE_TEXT: Final[Schema] = {"type": "string", "maxLength": 150000}  # Stripe: 150,000 in all
UPDATE_DISPUTE: Final = object_schema(
    evidence=object_schema(**dict.fromkeys(EVIDENCE_FIELDS, EVIDENCE_TEXT)),
    metadata=METADATA,
    submit={"type": "boolean"},
    expand=EXPAND,
)
LIST_BY_PAYMENT: Final = object_schema(**PAGE, charge=ID, payment_intent=ID, created=CREATED)

routes = web.RouteTableDef()


@routes.get("/v1/charges/{charge}")
async def retrieve_charge(request: web.Request) -> web.Response:
    check_expand((await read_params(request, RETRIEVE)).get("expand"), NOTHING)
    return stripe_json(request.app[SANDBOX].charge(request.match_info["charge"]))


@routes.post("/v1/refunds")
async def create_refund(request: web.Request) -> web.Response:
    params = await read_params(request, CREATE_REFUND)
    check_expand(params.get("expand"), NOTHING)
    refund = request.app[SANDBOX].refunds.create(params, meta_of(request))
    executed(request)
    request.app[POKE]()  # a test card's refund may be due to fail
    return stripe_json(refund)


@routes.get("/v1/refunds")
async def list_refunds(request: web.Request) -> web.Response:
    query = await read_params(request, LIST_BY_PAYMENT)
    check_expand(query.get("expand"), NOTHING)
    return stripe_json(request.app[SANDBOX].refunds.list(query))


@routes.get("/v1/refunds/{refund}")
async def retrieve_refund(request: web.Request) -> web.Response:
    check_expand((await read_params(request, RETRIEVE)).get("expand"), NOTHING)
    return stripe_json(request.app[SANDBOX].refunds.get(request.match_info["refund"]))


@routes.post("/v1/refunds/{refund}/cancel")
async def cancel_refund(request: web.Request) -> web.Response:
    check_expand((await read_params(request, RETRIEVE)).get("expand"), NOTHING)
    refund = request.app[SANDBOX].refunds.cancel(request.match_info["refund"], meta_of(request))
    executed(request)
    return stripe_json(refund)


@routes.get("/v1/disputes")
async def list_disputes(request: web.Request) -> web.Response:
    query = await read_params(request, LIST_BY_PAYMENT)
    check_expand(query.get("expand"), NOTHING)
    return stripe_json(request.app[SANDBOX].disputes.list(query))


@routes.get("/v1/disputes/{dispute}")
async def retrieve_dispute(request: web.Request) -> web.Response:
    check_expand((await read_params(request, RETRIEVE)).get("expand"), NOTHING)
    return stripe_json(request.app[SANDBOX].disputes.get(request.match_info["dispute"]))


@routes.post("/v1/disputes/{dispute}")
async def update_dispute(request: web.Request) -> web.Response:
    params = await read_params(request, UPDATE_DISPUTE)
    check_expand(params.get("expand"), NOTHING)
    dispute = request.app[SANDBOX].disputes.update(
        request.match_info["dispute"], params, meta_of(request)
    )
    executed(request)
    return stripe_json(dispute)


@routes.post("/v1/disputes/{dispute}/close")
async def close_dispute(request: web.Request) -> web.Response:
    """Accept the dispute (Stripe: "dismissing it, acknowledging it as lost")."""
    check_expand((await read_params(request, RETRIEVE)).get("expand"), NOTHING)
    dispute = request.app[SANDBOX].disputes.lose(request.match_info["dispute"], meta_of(request))
    executed(request)
    return stripe_json(dispute)
