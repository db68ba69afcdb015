"""Server-rendered pages: jinja2 with autoescape, one stylesheet, no JavaScript.

Every page gets the visitor's CSRF token and login state, the sandbox banner when the service
runs in sandbox mode, and headers that keep it out of frames, caches and other sites' referrers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aiohttp_jinja2
import jinja2
from aiohttp import web

from .auth import visitor_of, with_csrf_cookie
from .keys import SETTINGS

STATIC_DIR: Final = Path(__file__).parent / "static"
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def setup_pages(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader(__package__, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["utc"] = utc_time
    app.router.add_static("/static", STATIC_DIR, append_version=False)


def utc_time(timestamp: int) -> str:
    """Unix seconds as people read them; UTC, because the server cannot know the reader's zone."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


async def render(
    request: web.Request, template: str, status: int = 200, **context: Any
) -> web.Response:
    visitor = await visitor_of(request)
    response = aiohttp_jinja2.render_template(
        template,
        request,
        {
            "sandbox": request.app[SETTINGS].mode == "sandbox",
            "user": visitor.user,
            "csrf_token": visitor.csrf_token,
            **context,
        },
        status=status,
    )
    response.headers.update(SECURITY_HEADERS)
    with_csrf_cookie(request, response, visitor)
    return response


async def message_page(
    request: web.Request,
    status: int,
    title: str,
    message: str,
    *,
    error: bool = True,
    link: str | None = None,
    link_text: str | None = None,
) -> web.Response:
    """A page that says one thing: what went wrong and where to go next."""
    return await render(
        request,
        "message.html",
        status,
        title=title,
        message=message,
        error=error,
        link=link,
        link_text=link_text,
    )
