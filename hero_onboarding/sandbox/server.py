"""Running the sandbox in the foreground until asked to stop."""

from __future__ import annotations

import asyncio
import errno
import logging

from aiohttp import web

from ..config import StartupError
from .app import create_sandbox_app, load_state
from .config import SandboxConfig
from .state import StateFileError

log = logging.getLogger(__name__)


async def serve_sandbox(config: SandboxConfig, stop: asyncio.Event) -> None:
    try:
        state = await asyncio.to_thread(load_state, config)
    except StateFileError as exc:
        raise StartupError(str(exc)) from None
    app = create_sandbox_app(config, state=state)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        try:
            await site.start()
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise StartupError(f"cannot listen on {config.host}:{config.port}: {reason}") from None
        endpoints = ", ".join(endpoint.url for endpoint in config.endpoints) or "none"
        log.info(
            "Stripe sandbox listening on %s (webhook endpoints: %s)", config.base_url, endpoints
        )
        await stop.wait()
    finally:
        await runner.cleanup()
