"""Running the admin daemon until told to stop (what `hero-onboarding admin` does)."""

from __future__ import annotations

import asyncio
import logging

from .. import __version__, sd_notify
from ..config import ADMIN_SERVICE, Secret, Settings
from ..payments.stripe_provider import StripeCheckouts
from ..rpc.server import ServiceInfo, bind_unix_socket, create_rpc_app, serving_on_socket
from ..serving import open_store
from .methods import AdminContext, build_registry

log = logging.getLogger(__name__)

SERVICE = ServiceInfo(
    name=ADMIN_SERVICE,
    title="Hero onboarding admin",
    version=__version__,
    description="Inspect and correct prepaid-credit billing: users, balances, the ledger, "
    "checkouts, webhook deliveries, audited adjustments and reconciliation with Stripe.",
)


async def serve_admin(
    settings: Settings, stripe_secret_key: Secret | None, stop: asyncio.Event
) -> None:
    """Take the socket, open the store, answer until `stop`, then close both (socket removed).

    The socket (and the lock beside it) comes first: a second daemon learns that one is running
    before it touches the database.
    """
    bound = await asyncio.to_thread(bind_unix_socket, settings.admin_socket_path)
    try:
        store = await open_store(settings)
        reconciler = (
            StripeCheckouts(stripe_secret_key, api_base=settings.stripe_api_base)
            if stripe_secret_key is not None
            else None
        )
        try:
            ctx = AdminContext(settings, store, reconciler)
            app = create_rpc_app(build_registry(ctx), SERVICE)
            async with serving_on_socket(
                app, bound, shutdown_timeout_s=settings.shutdown_timeout_s
            ):
                log.info(
                    "admin daemon answering on %s (database %s, reconcile %s)",
                    bound.path,
                    settings.db_path,
                    "with Stripe" if reconciler else "off: no STRIPE_SANDBOX_SECRET_KEY",
                )
                sd_notify.ready(f"answering on {bound.path}")
                await stop.wait()
                sd_notify.stopping()
                log.info("stopping")
        finally:
            if reconciler is not None:
                await reconciler.close()
            await store.close()
    finally:
        bound.release()
    log.info("stopped")
