"""Building the sandbox app: state, webhook dispatcher, the clock that expires and settles."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import jinja2
from aiohttp import web

from .. import __version__
from . import api, controls, endpoints, money_api, money_controls, page
from .buyer import Buyer
from .config import SERVICE_NAME, SandboxConfig
from .endpoint_store import delivery_targets
from .engine import Sandbox
from .keys import BUYER, CONFIG, DISPATCHER, POKE, SANDBOX, SAVE, TEMPLATES
from .middleware import auth_middleware, commit_middleware, errors_middleware
from .state import SandboxState, StateFile
from .webhooks import WebhookDispatcher

log = logging.getLogger(__name__)

IDLE_CHECK_S = 60.0  # the clock looks again at least this often, whatever it expects
RETRY_AFTER_FAILURE_S = 5.0


def load_state(config: SandboxConfig) -> SandboxState:
    """The saved state, or a fresh one; blocking file I/O, so run it before serving."""
    return StateFile(config.state_file).load() if config.state_file else SandboxState()


def create_sandbox_app(
    config: SandboxConfig,
    *,
    state: SandboxState | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The sandbox as an aiohttp app, over `state` (default: what `load_state` reads)."""
    state = load_state(config) if state is None else state
    state_file = StateFile(config.state_file) if config.state_file else None

    async def save() -> None:
        """Make the state durable, then let the deliveries it covers go out."""
        ready = dispatcher.take_queued()
        try:
            if state_file is not None:
                await state_file.save(state)
        except BaseException:
            dispatcher.requeue(ready)
            raise
        dispatcher.start_deliveries(ready)

    dispatcher = WebhookDispatcher(
        config, state, save=save, clock=clock, registered=lambda: delivery_targets(state)
    )
    sandbox = Sandbox(config, state, clock=clock, publish=dispatcher.publish)
    wake = asyncio.Event()

    app = web.Application(middlewares=[errors_middleware, auth_middleware, commit_middleware])
    app[CONFIG] = config
    app[SANDBOX] = sandbox
    app[BUYER] = Buyer(sandbox)
    app[DISPATCHER] = dispatcher
    app[SAVE] = save
    app[POKE] = wake.set
    app[TEMPLATES] = jinja2.Environment(
        loader=jinja2.PackageLoader(__package__, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    app.router.add_get("/health", health)
    app.add_routes(api.routes)
    app.add_routes(endpoints.routes)
    app.add_routes(money_api.routes)
    app.add_routes(controls.routes)
    app.add_routes(money_controls.routes)
    app.add_routes(page.routes)

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        await dispatcher.start()
        clock_task = asyncio.get_running_loop().create_task(_run_clock(sandbox, save, wake, clock))
        yield
        try:
            clock_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await clock_task
            await dispatcher.close()
        finally:
            await save()

    app.cleanup_ctx.append(lifecycle)
    return app


async def health(_: web.Request) -> web.Response:
    return web.json_response(
        {"status": "ok", "service": SERVICE_NAME, "version": __version__, "pid": os.getpid()}
    )


async def _run_clock(
    sandbox: Sandbox,
    save: Callable[[], Awaitable[None]],
    wake: asyncio.Event,
    clock: Callable[[], float],
) -> None:
    """Expire sessions and settle delayed payments when they fall due, as Stripe's clock would.

    A failure (a state file that cannot be written) is logged and tried again shortly: the
    clock must outlive it, or sessions would stay open forever.
    """
    while True:
        revision = sandbox.revision
        try:
            next_due = sandbox.run_due()
            if sandbox.revision != revision:
                await save()
        except Exception:
            log.exception("the sandbox clock failed; trying again in %s s", RETRY_AFTER_FAILURE_S)
            next_due = clock() + RETRY_AFTER_FAILURE_S
        wait = IDLE_CHECK_S if next_due is None else min(IDLE_CHECK_S, next_due - clock())
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=max(wait, 0.0))
