"""What the public daemon lends a provider's own pages (payments.base.PageHost).

A provider that serves pages (the stub's pay button) writes its handlers in its payments/
module against this small surface: who is logged in, the daemon's templates, fulfilment. So
the daemon adds whatever routes the selected provider brings without knowing which it is.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..billing import fulfil
from ..payments.base import ProviderEvent
from .auth import visitor_of
from .keys import CLOCK, METRICS, STORE
from .pages import message_page, render


class DaemonPageHost:
    """The PageHost of one app: every method reads what it needs from the request's app."""

    async def buyer(self, request: web.Request) -> str:
        visitor = await visitor_of(request)
        if visitor.user is None:  # as `authenticated`: forms too land where one logs in
            raise web.HTTPSeeOther("/")
        return visitor.user.sid

    async def render(
        self, request: web.Request, template: str, **context: Any
    ) -> web.StreamResponse:
        return await render(request, template, **context)

    async def not_found(self, request: web.Request, title: str, message: str) -> web.StreamResponse:
        return await message_page(
            request, 404, title, message, link="/", link_text="Back to your credits"
        )

    async def fulfil(self, request: web.Request, event: ProviderEvent) -> str:
        app = request.app
        result = await fulfil(app[STORE], event, now=int(app[CLOCK]()))
        app[METRICS].fulfilled(event.provider, result, event.currency)
        return result.outcome.value
