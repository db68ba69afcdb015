"""Running the public daemon until told to stop (what `hero-onboarding server` does)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web

from .. import sd_notify
from ..config import Mode, Secrets, Settings
from ..mycelium.messages import MessageSender, MyceliumNode, SandboxOutbox
from ..mycelium.proof import ProofError, load_or_create_key
from ..payments.providers import build_providers
from ..primitives import StartupError
from ..serving import listening
from ..store.opening import open_store
from .app import create_app
from .connections import guarded_sites

log = logging.getLogger(__name__)


async def serve(settings: Settings, secrets: Secrets, stop: asyncio.Event) -> None:
    """Open the store, listen, serve until `stop` is set, then drain and close.

    In-flight requests get `settings.shutdown_timeout_s` to finish; writes they queued are
    committed before the store closes. Raises StartupError when it cannot begin.
    """
    store = await open_store(settings)
    try:
        try:
            login_key = await asyncio.to_thread(load_or_create_key, settings.login_key_path)
        except (OSError, ProofError) as exc:
            raise StartupError(
                f"cannot use the login key {settings.login_key_path}: {exc}"
            ) from exc
        providers = build_providers(settings, secrets)
        try:
            checkouts = providers.checkouts  # StartupError when its secret key is missing
            async with aiohttp.ClientSession() as http:
                messenger: MessageSender = (
                    SandboxOutbox()
                    if settings.mode == Mode.SANDBOX
                    else MyceliumNode(settings.mycelium_api_url, http)
                )
                app = create_app(
                    settings,
                    store,
                    providers.webhooks,
                    checkouts=checkouts,
                    messenger=messenger,
                    login_key=login_key,
                )
                await _serve(app, settings, stop)
        finally:
            await providers.close()
    finally:
        await store.close()
    log.info("stopped")


async def _serve(app: web.Application, settings: Settings, stop: asyncio.Event) -> None:
    async with (
        guarded_sites(settings) as site,
        listening(
            app,
            settings.host,
            settings.port,
            shutdown_timeout_s=settings.shutdown_timeout_s,
            site=site,
        ),
    ):
        log.info(
            "listening on %s:%d (public URL %s, %s mode, database %s)",
            settings.host,
            settings.port,
            settings.public_url,
            settings.mode,
            settings.db_path,
        )
        # Bound and the store open (serve() opened it before us): systemd may count us started.
        sd_notify.ready(f"listening on {settings.host}:{settings.port}")
        await stop.wait()
        sd_notify.stopping()
        log.info("stopping: finishing in-flight requests")
