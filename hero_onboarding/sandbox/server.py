"""Running the sandbox in the foreground until asked to stop."""

from __future__ import annotations

import asyncio
import logging

from ..primitives import StartupError
from ..serving import listening
from .app import create_sandbox_app, load_state
from .config import SandboxConfig
from .state import StateFileError

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 5.0


async def serve_sandbox(config: SandboxConfig, stop: asyncio.Event) -> None:
    try:
        state = await asyncio.to_thread(load_state, config)
    except StateFileError as exc:
        raise StartupError(str(exc)) from None
    app = create_sandbox_app(config, state=state)
    async with listening(app, config.host, config.port, shutdown_timeout_s=SHUTDOWN_TIMEOUT_S):
        endpoints = ", ".join(endpoint.url for endpoint in config.endpoints) or "none"
        log.info(
            "Stripe sandbox listening on %s (webhook endpoints: %s)", config.base_url, endpoints
        )
        await stop.wait()
