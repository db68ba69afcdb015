"""Running the public daemon until told to stop (what `hero-onboarding server` does)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp import web

from .. import sd_notify
from ..config import Secrets, Settings
from ..mycelium.messages import MessageSender, MyceliumNode, SandboxOutbox
from ..mycelium.proof import ProofError, load_or_create_key
from ..payments.base import PaymentProvider
from ..payments.stripe_provider import StripeCheckouts, StripeWebhooks
from ..payments.stub import StubCheckouts
from ..primitives import StartupError
from ..serving import listening, open_store
from .app import create_app
from .connections import guarded_sites

log = logging.getLogger(__name__)


def stripe_livemode(secrets: Secrets) -> bool | None:
    """Which Stripe mode our API key is for (None when no key is configured yet)."""
    if secrets.stripe_secret_key is None:
        return None
    key = secrets.stripe_secret_key.reveal()
    if key.startswith(("sk_live_", "rk_live_")):
        return True
    if key.startswith(("sk_test_", "rk_test_")):
        return False
    return None


def payment_provider(settings: Settings, secrets: Secrets) -> PaymentProvider:
    """The provider --provider names; Stripe needs its secret key (control/ checked it)."""
    if settings.provider == "stub":
        return StubCheckouts(settings.public_url)
    if secrets.stripe_secret_key is None:
        raise StartupError("--provider=stripe needs STRIPE_SANDBOX_SECRET_KEY")
    return StripeCheckouts(
        secrets.stripe_secret_key,
        api_base=settings.stripe_api_base,
        timeout_s=settings.provider_timeout_s,
    )


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
        webhooks = (
            StripeWebhooks(
                secrets.webhook_signing_keys,
                tolerance_s=settings.webhook_tolerance_s,
                livemode=stripe_livemode(secrets),
                account=settings.stripe_account,
            )
            if secrets.webhook_signing_keys
            else None
        )
        checkouts = payment_provider(settings, secrets)
        try:
            async with aiohttp.ClientSession() as http:
                messenger: MessageSender = (
                    SandboxOutbox()
                    if settings.mode == "sandbox"
                    else MyceliumNode(settings.mycelium_api_url, http)
                )
                app = create_app(
                    settings,
                    store,
                    webhooks,
                    checkouts=checkouts,
                    messenger=messenger,
                    login_key=login_key,
                )
                await _serve(app, settings, stop)
        finally:
            await checkouts.close()
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
