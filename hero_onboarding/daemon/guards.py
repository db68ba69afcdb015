"""Guards in front of handlers: CSRF on every form, and `authenticated` for user-only routes."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Final

from aiohttp import web

from ..store.web_sessions import WebSession
from .auth import CSRF_FIELD, VISITOR, visitor_of
from .pages import message_page

CSRF_EXEMPT_PREFIXES: Final = ("/webhooks/",)  # signed by their sender instead

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method != "POST" or request.path.startswith(CSRF_EXEMPT_PREFIXES):
        return await handler(request)
    visitor = await visitor_of(request)
    try:
        form = await request.post()
        sent = form.get(CSRF_FIELD)
    except ValueError:  # not a form we can read: no token either
        sent = None
    if (
        visitor.token_is_new
        or not isinstance(sent, str)
        or not hmac.compare_digest(sent.encode(), visitor.csrf_token.encode())
    ):
        return await message_page(
            request,
            403,
            "This form has expired",
            "The form was missing its security token or it no longer matches your session. "
            "Go back, reload the page and try again.",
        )
    return await handler(request)


def authenticated(handler: Handler) -> Handler:
    """For routes that need a logged-in user: pages send visitors to log in, forms get 401."""

    @wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        visitor = await visitor_of(request)
        if visitor.user is None:
            if request.method == "GET":
                raise web.HTTPSeeOther("/")
            return await message_page(
                request, 401, "Please log in", "Your session has ended. Log in again to go on."
            )
        return await handler(request)

    return guarded


def current_user(request: web.Request) -> WebSession:
    """The user an `authenticated` handler serves (it ran visitor_of already)."""
    user = request[VISITOR].user
    assert user is not None  # the guard let only logged-in requests through
    return user
