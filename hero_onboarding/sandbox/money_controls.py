"""Test controls for what happens to a payment after it: refunds that fail, disputes that close.

These do on request what a bank or Stripe's Dashboard would do on its own time; like every
/_sandbox control they take the API key and answer the object they changed. Their events carry
no request (`request.id` null), as Stripe's automatic changes do.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from .api import ID, INT
from .disputes import REASONS
from .engine import AUTOMATIC
from .keys import SANDBOX
from .middleware import executed, read_params, stripe_json
from .money_api import REFUND_REASON
from .params import object_schema
from .refunds import FAILURE_REASONS, STATUSES

REFUND: Final = object_schema(
    amount=INT,
    charge=ID,
    payment_intent=ID,
    reason=REFUND_REASON,
    status={"type": "string", "enum": list(STATUSES)},
)
FAIL_REFUND: Final = object_schema(failure_reason={"type": "string", "enum": list(FAILURE_REASONS)})
DISPUTE: Final = object_schema(
    amount=INT,
    charge=ID,
    payment_intent=ID,
    reason={"type": "string", "enum": list(REASONS)},
    inquiry={"type": "boolean"},
)
NO_PARAMS: Final = object_schema()

routes = web.RouteTableDef()


@routes.post("/_sandbox/refunds")
async def refund(request: web.Request) -> web.Response:
    """Refund a payment as the Dashboard would; `status=pending` keeps it pending until told."""
    params = await read_params(request, REFUND)
    status = params.pop("status", "succeeded")
    created = request.app[SANDBOX].refunds.create(params, AUTOMATIC, status=status)
    executed(request)
    return stripe_json(created)


@routes.post("/_sandbox/refunds/{refund}/fail")
async def fail_refund(request: web.Request) -> web.Response:
    """The bank returns the refund: failed, and the charge's amount_refunded drops again."""
    params = await read_params(request, FAIL_REFUND)
    failed = request.app[SANDBOX].refunds.fail(
        request.match_info["refund"], params.get("failure_reason", "unknown")
    )
    executed(request)
    return stripe_json(failed)


@routes.post("/_sandbox/refunds/{refund}/succeed")
async def succeed_refund(request: web.Request) -> web.Response:
    await read_params(request, NO_PARAMS)
    succeeded = request.app[SANDBOX].refunds.succeed(request.match_info["refund"])
    executed(request)
    return stripe_json(succeeded)


@routes.post("/_sandbox/disputes")
async def open_dispute(request: web.Request) -> web.Response:
    """The cardholder's bank disputes a paid charge (`inquiry=true`: an inquiry first)."""
    params = await read_params(request, DISPUTE)
    sandbox = request.app[SANDBOX]
    charge = sandbox.charge_of(params)
    opened = sandbox.disputes.open(
        charge,
        amount=params.get("amount"),
        reason=params.get("reason", "fraudulent"),
        inquiry=params.get("inquiry", False),
    )
    executed(request)
    return stripe_json(opened)


@routes.post("/_sandbox/disputes/{dispute}/win")
async def win_dispute(request: web.Request) -> web.Response:
    """Won: closed `won` and the funds reinstated (an inquiry closes `warning_closed`)."""
    await read_params(request, NO_PARAMS)
    won = request.app[SANDBOX].disputes.win(request.match_info["dispute"])
    executed(request)
    return stripe_json(won)


@routes.post("/_sandbox/disputes/{dispute}/lose")
async def lose_dispute(request: web.Request) -> web.Response:
    """Lost: closed `lost`, the money stays with the cardholder."""
    await read_params(request, NO_PARAMS)
    lost = request.app[SANDBOX].disputes.lose(request.match_info["dispute"])
    executed(request)
    return stripe_json(lost)
