"""The stub provider's hosted page (provider=stub): one button pays, with no money and no network.

Served only when the app's provider is a StubCheckouts. Paying goes through billing.fulfil with
the event the stub reports, exactly as a Stripe webhook would, then on to the return page.
"""

from __future__ import annotations

import logging

from aiohttp import web

from ..billing import fulfil
from ..money import format_amount
from ..payments.stub import StubCheckout, StubCheckouts
from .guards import authenticated, current_user
from .keys import CHECKOUTS, CLOCK, METRICS, STORE
from .pages import message_page, render

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


@routes.get("/payment/stub/{checkout}")
@authenticated
async def stub_page(request: web.Request) -> web.Response:
    checkout = _own_checkout(request)
    if checkout is None:
        return await _gone(request)
    return await render(
        request,
        "stub_checkout.html",
        checkout=checkout,
        amount=format_amount(checkout.request.amount, checkout.request.currency),
    )


@routes.post("/payment/stub/{checkout}")
@authenticated
async def stub_pay(request: web.Request) -> web.Response:
    checkout = _own_checkout(request)
    if checkout is None:
        return await _gone(request)
    stub = request.app[CHECKOUTS]
    assert isinstance(stub, StubCheckouts)  # the route exists only for the stub
    event = stub.pay(checkout)
    result = await fulfil(request.app[STORE], event, now=int(request.app[CLOCK]()))
    request.app[METRICS].fulfilled("stub", result, event.currency)
    log.info("stub checkout %s paid: %s", checkout.id, result.outcome)
    raise web.HTTPSeeOther(checkout.success_url)


def _own_checkout(request: web.Request) -> StubCheckout | None:
    """The visitor's own payable stub checkout; anyone else's is as unknown as a made-up one."""
    stub = request.app[CHECKOUTS]
    if not isinstance(stub, StubCheckouts):
        return None
    checkout = stub.find(request.match_info["checkout"])
    if checkout is None or checkout.request.sid != current_user(request).sid:
        return None
    return checkout


async def _gone(request: web.Request) -> web.Response:
    return await message_page(
        request,
        404,
        "No such payment",
        "This payment page has expired, was paid already, or is not yours. Start again from "
        "your credits.",
        link="/",
        link_text="Back to your credits",
    )
