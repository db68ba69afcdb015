"""Guards in front of page handlers: failures as pages, CSRF on every form, `authenticated`.

Webhook routes are left alone: they are signed by their sender and answer in their own terms.
`unguarded_routes_middleware`, first in the chain, hands them straight to their handler past
every page middleware (each one a pair of coroutine frames per request, on the hottest route),
doing for them only the two things every route gets: the 415 and the latency histogram.
Every route, webhooks included, refuses compressed bodies before anything reads them (see
docs/request-bodies.md for why, and how aiohttp would otherwise inflate them).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Final, TypeVar

import apsw
from aiohttp import hdrs, web

from ..serving import FORM_READ_ERRORS
from ..store import StoreError
from ..store.web_sessions import WebSession
from .auth import CSRF_FIELD, VISITOR, settle_visitor_without_store, visitor_of
from .connections import BodyTimeout
from .keys import METRICS
from .pages import message_page

AnyResponse = TypeVar("AnyResponse", bound=web.StreamResponse)

log = logging.getLogger(__name__)

UNGUARDED_PREFIXES: Final = ("/webhooks/",)
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPE: Final = "application/x-www-form-urlencoded"
FORM_MAX_BYTES: Final = 16 * 1024  # our forms hold a few short fields
# Stripe and browsers never compress what they send us; anything else would be inflated by
# aiohttp as it arrives, 1 MB on the wire becoming 1 GiB of CPU work on the event loop.
IDENTITY_ENCODINGS: Final = frozenset({"", "identity"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def closing(request: web.BaseRequest, response: AnyResponse) -> AnyResponse:
    """Send `response` now, then end the connection without reading the rest of the body.

    Connection: close says we will not take another request on it. protocol.close() makes
    aiohttp's parser drop every further byte unparsed: nothing more is buffered or inflated.
    Sending the answer here and then a FIN (write_eof) lets the client read it and see the
    end; closing outright instead would make the kernel answer the unread bytes with a reset,
    and a client still sending would lose our answer. aiohttp then waits (at most its
    lingering_time) for the client to hang up, discarding what it still sends, and closes.
    """
    response.force_close()
    protocol = request.protocol
    if protocol is not None:
        protocol.close()
    await response.prepare(request)
    await response.write_eof()
    transport = request.transport
    if transport is not None and transport.can_write_eof():
        transport.write_eof()
    return response


@web.middleware
async def unguarded_routes_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Webhook routes skip the page middlewares: refused if compressed, timed, and handled.

    Only routes that matched: a 404 or 405 under /webhooks/ takes the usual chain.
    """
    match = request.match_info
    if match.http_exception is not None or not request.path.startswith(UNGUARDED_PREFIXES):
        return await handler(request)
    started = time.perf_counter()
    try:
        if body_is_encoded(request):
            return await refuse_encoded_body(request)
        return await match.handler(request)
    finally:
        resource = match.route.resource
        request.app[METRICS].observe_request(
            resource.canonical if resource is not None else "unmatched",
            request.method,
            time.perf_counter() - started,
        )


@web.middleware
async def encoded_bodies_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """415 for any request whose body is compressed, on every route, before it is read."""
    if body_is_encoded(request):
        return await refuse_encoded_body(request)
    return await handler(request)


def body_is_encoded(request: web.BaseRequest) -> bool:
    """Whether the request says its body is compressed (anything but identity)."""
    encoding = request.headers.get(hdrs.CONTENT_ENCODING)
    return encoding is not None and encoding.strip().lower() not in IDENTITY_ENCODINGS


async def refuse_encoded_body(request: web.Request) -> web.StreamResponse:
    """The 415 for a compressed body, sent unread, and the connection closing."""
    request.app[METRICS].bodies_refused.labels("encoding").inc()
    reason = "Content-Encoding is not accepted: send the body uncompressed"
    response: web.Response
    if request.path.startswith(UNGUARDED_PREFIXES):
        response = web.json_response({"error": reason}, status=415)
    else:
        response = await message_page(request, 415, "Not accepted", f"{reason}.")
    return await closing(request, response)


@web.middleware
async def page_errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A database that cannot answer is a 503 page; our own bug a 500 page, never a traceback."""
    if request.path.startswith(UNGUARDED_PREFIXES):
        return await handler(request)
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except (StoreError, TimeoutError, apsw.Error) as exc:
        log.error("%s %s: the database did not answer: %s", request.method, request.path, exc)
        settle_visitor_without_store(request)
        return await message_page(
            request,
            503,
            "Temporarily unavailable",
            "We could not reach our records just now; nothing was changed. Try again shortly.",
        )
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return await message_page(
            request, 500, "Something went wrong", "That did not work, and it is our fault."
        )


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every state-changing request must come from one of our forms, with its token."""
    if (
        request.method in SAFE_METHODS
        or request.path.startswith(UNGUARDED_PREFIXES)
        or request.match_info.http_exception is not None  # no such route: let it say 404/405
    ):
        return await handler(request)
    if (request.content_length or 0) > FORM_MAX_BYTES:
        return await _form_too_large(request)
    form = None
    if request.content_type == FORM_TYPE:
        try:
            # Bounded on the bytes read, chunked or not: the app's client_max_size is
            # FORM_MAX_BYTES, so aiohttp stops reading one chunk past it.
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            return await _form_too_large(request)
        except BodyTimeout:
            return await message_page(
                request,
                408,
                "That took too long",
                "The form did not arrive in time. Check your connection and try again.",
            )
        except FORM_READ_ERRORS:
            form = None
    if form is None:
        return await message_page(
            request,
            400,
            "That form could not be read",
            "The browser sent something that is not one of our forms. Reload the page and try "
            "again.",
        )
    visitor = await visitor_of(request)
    sent = form.get(CSRF_FIELD)
    cross_site = request.headers.get("Sec-Fetch-Site") == "cross-site"
    if (
        cross_site
        or visitor.token_is_new
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


async def _form_too_large(request: web.Request) -> web.StreamResponse:
    request.app[METRICS].bodies_refused.labels("too_large").inc()
    page = await message_page(
        request, 413, "Too much", "That form sent far more than our forms ever hold."
    )
    return await closing(request, page)


def authenticated(handler: Handler) -> Handler:
    """For routes that need a logged-in user: a visitor without a session is sent to log in.

    A 303 to the login page for forms too: a form posted after the session ended lands where
    the person can log in again, rather than on an error.
    """

    @wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        visitor = await visitor_of(request)
        if visitor.user is None:
            raise web.HTTPSeeOther("/")
        return await handler(request)

    return guarded


def current_user(request: web.Request) -> WebSession:
    """The user an `authenticated` handler serves (it ran visitor_of already)."""
    user = request[VISITOR].user
    assert user is not None  # the guard let only logged-in requests through
    return user
