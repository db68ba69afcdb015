"""Who is asking: session cookies and the CSRF token each visitor's forms must carry.

A session cookie holds a random token; the database holds only its SHA-256, with the user's sid,
a per-session CSRF token and an expiry. Before login, forms carry a double-submit token instead:
a random `hero_csrf` cookie that the form must echo (guards.py checks both). Cookies are
HttpOnly, SameSite=Lax, and Secure when the public URL is https.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from functools import partial
from typing import Final

from aiohttp import web

from ..config import Settings
from ..store import web_sessions
from ..store.web_sessions import WebSession
from .keys import CLOCK, SETTINGS, STORE

SESSION_COOKIE: Final = "hero_session"
CSRF_COOKIE: Final = "hero_csrf"
CSRF_FIELD: Final = "csrf_token"


@dataclass(frozen=True)
class Visitor:
    """The logged-in user (or None), and the CSRF token this visitor's forms must carry."""

    user: WebSession | None
    csrf_token: str
    token_is_new: bool = False  # a fresh double-submit token: the response must set its cookie


VISITOR: Final = web.RequestKey("visitor", Visitor)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def visitor_of(request: web.Request) -> Visitor:
    """Looked up once per request: the session behind the cookie, if it is still live."""
    known = request.get(VISITOR)
    if known is not None:
        return known
    user = None
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        now = int(request.app[CLOCK]())
        user = await request.app[STORE].read(
            partial(web_sessions.get_live, token_hash=token_hash(token), now=now)
        )
    if user is not None:
        visitor = Visitor(user, user.csrf_token)
    elif cookie := request.cookies.get(CSRF_COOKIE):
        visitor = Visitor(None, cookie)
    else:
        visitor = Visitor(None, secrets.token_urlsafe(24), token_is_new=True)
    request[VISITOR] = visitor
    return visitor


def _cookie_options(settings: Settings) -> dict[str, object]:
    return {
        "httponly": True,
        "samesite": "Lax",
        "secure": settings.public_url.startswith("https://"),
        "path": "/",
    }


def with_csrf_cookie(request: web.Request, response: web.StreamResponse, visitor: Visitor) -> None:
    if visitor.token_is_new:
        response.set_cookie(
            CSRF_COOKIE, visitor.csrf_token, **_cookie_options(request.app[SETTINGS])
        )


def start_session(request: web.Request, response: web.StreamResponse, token: str) -> None:
    """Hand the browser the session token whose hash the login just stored."""
    settings = request.app[SETTINGS]
    response.set_cookie(
        SESSION_COOKIE, token, max_age=settings.session_ttl_s, **_cookie_options(settings)
    )
    response.del_cookie(CSRF_COOKIE, path="/")


async def end_session(request: web.Request, response: web.StreamResponse) -> None:
    """Forget the session server-side (the cookie is then worthless anywhere) and clear it."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await request.app[STORE].write(partial(web_sessions.delete, token_hash=token_hash(token)))
    response.del_cookie(SESSION_COOKIE, path="/")
