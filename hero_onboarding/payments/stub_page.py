"""The stub provider's hosted page: one button pays, with no money and no network.

The stub contributes these routes (StubCheckouts.routes) to the public daemon while it is the
provider; the daemon lends login, its templates and fulfilment through a PageHost. Paying goes
through billing with the event the stub reports, exactly as a Stripe webhook would, then on to
the return page.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from aiohttp import web

from ..money import format_amount
from .base import PageHost

if TYPE_CHECKING:
    from .stub import StubCheckout, StubCheckouts

log = logging.getLogger(__name__)

PAGE_PATH: Final = "/payment/stub/"
TEMPLATE: Final = "stub_checkout.html"


def page_routes(stub: StubCheckouts, host: PageHost) -> web.RouteTableDef:
    """GET shows the visitor's own payable checkout; POST pays it and goes to the return page."""
    routes = web.RouteTableDef()

    async def own_checkout(request: web.Request) -> StubCheckout | None:
        """The visitor's own payable checkout; anyone else's is as unknown as a made-up one."""
        sid = await host.buyer(request)  # sends a visitor without a session to log in
        checkout = stub.find(request.match_info["checkout"])
        if checkout is None or checkout.request.sid != sid:
            return None
        return checkout

    async def gone(request: web.Request) -> web.StreamResponse:
        return await host.not_found(
            request,
            "No such payment",
            "This payment page has expired, was paid already, or is not yours. Start again "
            "from your credits.",
        )

    @routes.get(PAGE_PATH + "{checkout}")
    async def stub_page(request: web.Request) -> web.StreamResponse:
        checkout = await own_checkout(request)
        if checkout is None:
            return await gone(request)
        return await host.render(
            request,
            TEMPLATE,
            checkout=checkout,
            amount=format_amount(checkout.request.amount, checkout.request.currency),
        )

    @routes.post(PAGE_PATH + "{checkout}")
    async def stub_pay(request: web.Request) -> web.StreamResponse:
        checkout = await own_checkout(request)
        if checkout is None:
            return await gone(request)
        outcome = await host.fulfil(request, stub.pay(checkout))
        log.info("stub checkout %s paid: %s", checkout.id, outcome)
        raise web.HTTPSeeOther(checkout.success_url)

    return routes
