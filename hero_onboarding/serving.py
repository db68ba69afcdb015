"""What the daemons' foreground runs share: the database, serving on TCP, reading forms."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .config import Settings
from .primitives import StartupError
from .store import Store, StoreError

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


async def open_store(settings: Settings) -> Store:
    """The database as settings describe it, migrated; a StartupError if it cannot be used."""
    try:
        return await Store.open(
            settings.db_path,
            busy_timeout_ms=settings.db_busy_timeout_ms,
            write_timeout_s=settings.write_timeout_s,
            read_timeout_s=settings.read_timeout_s,
        )
    except StoreError as exc:
        raise StartupError(str(exc)) from exc
