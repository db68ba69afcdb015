"""Who is asking: session cookies and the CSRF token each visitor's forms must carry.

A session cookie holds a random token; the database holds only its SHA-256, with the user's sid,
a per-session CSRF token and an expiry. Before login, forms carry a double-submit token instead:
a random CSRF cookie that the form must echo (guards.py checks both). Cookies are HttpOnly and
SameSite=Lax; behind https they are also Secure and carry the `__Host-` prefix, so no other
host (a sibling subdomain, say) can plant one for us.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from functools import partial
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web

from ..config import Settings
from ..store import web_sessions
from ..store.web_sessions import WebSession
from .keys import CLOCK, SETTINGS, STORE

SESSION_COOKIE: Final = "hero_session"
CSRF_COOKIE: Final = "hero_csrf"
CSRF_FIELD: Final = "csrf_token"
_HOST_ONLY: Final = "__Host-"


@dataclass(frozen=True)
class Visitor:
    """The logged-in user (or None), and the CSRF token this visitor's forms must carry."""

    user: WebSession | None
    csrf_token: str
    token_is_new: bool = False  # a fresh double-submit token: the response must set its cookie


VISITOR: Final = web.RequestKey("visitor", Visitor)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_https(settings: Settings) -> bool:
    return urlsplit(settings.public_url).scheme.lower() == "https"


def cookie_name(settings: Settings, name: str) -> str:
    """`hero_session`, or `__Host-hero_session` behind https (Secure, host-only, path /)."""
    return _HOST_ONLY + name if is_https(settings) else name


def session_token_of(request: web.Request) -> str | None:
    return request.cookies.get(cookie_name(request.app[SETTINGS], SESSION_COOKIE)) or None


async def visitor_of(request: web.Request) -> Visitor:
    """Looked up once per request: the session behind the cookie, if it is still live."""
    if VISITOR in request:
        return request[VISITOR]
    user = None
    token = session_token_of(request)
    if token:
        now = int(request.app[CLOCK]())
        user = await request.app[STORE].read(
            partial(web_sessions.get_live, token_hash=token_hash(token), now=now)
        )
    visitor = Visitor(user, user.csrf_token) if user is not None else _anonymous(request)
    request[VISITOR] = visitor
    return visitor


def settle_visitor_without_store(request: web.Request) -> None:
    """When the database cannot say who is logged in, the error page shows nobody: rendering it
    must not ask the database again."""
    request.setdefault(VISITOR, _anonymous(request))


def _anonymous(request: web.Request) -> Visitor:
    if cookie := request.cookies.get(cookie_name(request.app[SETTINGS], CSRF_COOKIE)):
        return Visitor(None, cookie)
    return Visitor(None, secrets.token_urlsafe(24), token_is_new=True)


def _set(
    settings: Settings,
    response: web.StreamResponse,
    name: str,
    value: str,
    *,
    max_age: int | None = None,
) -> None:
    response.set_cookie(
        cookie_name(settings, name),
        value,
        httponly=True,
        samesite="Lax",
        secure=is_https(settings),
        path="/",
        max_age=max_age,
    )


def with_csrf_cookie(request: web.Request, response: web.StreamResponse, visitor: Visitor) -> None:
    if visitor.token_is_new:
        _set(request.app[SETTINGS], response, CSRF_COOKIE, visitor.csrf_token)


def start_session(request: web.Request, response: web.StreamResponse, token: str) -> None:
    """Hand the browser the session token whose hash the login just stored."""
    settings = request.app[SETTINGS]
    _set(settings, response, SESSION_COOKIE, token, max_age=settings.session_ttl_s)
    response.del_cookie(cookie_name(settings, CSRF_COOKIE), path="/")


async def end_session(request: web.Request, response: web.StreamResponse) -> None:
    """Forget the session server-side (the cookie is then worthless anywhere) and clear it."""
    token = session_token_of(request)
    if token:
        await request.app[STORE].write(partial(web_sessions.delete, token_hash=token_hash(token)))
    response.del_cookie(cookie_name(request.app[SETTINGS], SESSION_COOKIE), path="/")
