"""What every HTTP server here shares, ours and the sandbox's: serving on TCP, reading forms.

Nothing about our database: the sandbox (Stripe's side) uses this too and must never import
store/ (opening the store for a daemon is store.opening.open_store).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .primitives import StartupError

# What reading a posted form can raise on a hostile body: bad UTF-8 (ValueError), an unknown
# charset (LookupError), broken multipart or Content-Encoding (the other two).
FORM_READ_ERRORS: Final = (ValueError, LookupError, HttpProcessingError, web.RequestPayloadError)


@asynccontextmanager
async def listening(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout_s: float,
    site: Callable[[web.BaseRunner, str, int], web.BaseSite] = web.TCPSite,
) -> AsyncIterator[None]:
    """Serve `app` on host:port for the body of the `async with`, then drain and clean up.

    `site` makes the listening site (the public daemon's guards its connections:
    daemon/connections.py). A port that cannot be bound is a StartupError saying which and why,
    for the CLI's one line.
    """
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout_s)
    await runner.setup()
    try:
        try:
            await site(runner, host, port).start()
        except OSError as exc:
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise StartupError(f"cannot listen on {host}:{port}: {reason}") from exc
        yield
    finally:
        await runner.cleanup()
