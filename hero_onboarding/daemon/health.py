"""Liveness and readiness, for supervisors and load balancers."""

from __future__ import annotations

import logging
import os

from aiohttp import web

from .. import SERVICE_NAME, __version__
from ..store import StoreError
from .keys import STORE

log = logging.getLogger(__name__)


async def health(request: web.Request) -> web.Response:
    """The process answers HTTP. Says nothing about its dependencies (that is /ready)."""
    return web.json_response(
        {"status": "ok", "service": SERVICE_NAME, "version": __version__, "pid": os.getpid()}
    )


async def ready(request: web.Request) -> web.Response:
    """The database answers, its schema is current and the writer runs: we can take payments."""
    try:
        await request.app[STORE].ping()
    except StoreError as exc:
        log.warning("not ready: %s", exc)
        return web.json_response({"status": "unavailable", "detail": str(exc)}, status=503)
    return web.json_response({"status": "ready"})
