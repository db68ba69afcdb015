"""Running the admin daemon until told to stop (what `hero-onboarding admin` does)."""

from __future__ import annotations

import asyncio
import logging
import os

from .. import __version__, sd_notify
from ..config import ADMIN_SERVICE, Secrets, Settings
from ..payments.base import Reconciler
from ..payments.providers import build_providers
from ..rpc.server import ServiceInfo, bind_unix_socket, create_rpc_app, serving_on_socket
from ..store import Store
from ..store.opening import open_store
from .methods import AdminContext, build_registry
from .reconcile_run import ReconcileRunner
from .reconcile_schedule import ReconcileSchedule, scheduled

log = logging.getLogger(__name__)

SERVICE = ServiceInfo(
    name=ADMIN_SERVICE,
    title="Hero onboarding admin",
    version=__version__,
    description="Inspect and correct prepaid-credit billing: users, balances, the ledger, "
    "checkouts, webhook deliveries, audited adjustments and reconciliation with Stripe.",
)


async def serve_admin(settings: Settings, secrets: Secrets, stop: asyncio.Event) -> None:
    """Take the socket, open the store, answer until `stop`, then close both (socket removed).

    The socket (and the lock beside it) comes first: a second daemon learns that one is running
    before it touches the database. With a provider to reconcile with (payments.providers:
    Stripe's needs STRIPE_SANDBOX_SECRET_KEY) and a non-zero --reconcile-interval-s,
    reconciliation runs on a timer while the daemon answers; stopping cancels a run under way
    between two events (each event is its own transaction) and records it as interrupted.
    """
    bound = await asyncio.to_thread(bind_unix_socket, settings.admin_socket_path)
    try:
        store = await open_store(settings)
        providers = build_providers(settings, secrets)
        reconciler = providers.reconciler
        try:
            schedule = _schedule(settings, store, reconciler)
            ctx = AdminContext(settings, store, reconciler, schedule=schedule)
            app = create_rpc_app(build_registry(ctx), SERVICE)
            async with (
                serving_on_socket(app, bound, shutdown_timeout_s=settings.shutdown_timeout_s),
                scheduled(schedule),
            ):
                log.info(
                    "admin daemon answering on %s (database %s, reconcile %s, schedule %s)",
                    bound.path,
                    settings.db_path,
                    f"with {reconciler.name}"
                    if reconciler
                    else "off: no STRIPE_SANDBOX_SECRET_KEY",
                    ctx.schedule_state(),
                )
                sd_notify.ready(f"answering on {bound.path}")
                await stop.wait()
                sd_notify.stopping()
                log.info("stopping")
        finally:
            await providers.close()
            await store.close()
    finally:
        bound.release()
    log.info("stopped")


def _schedule(
    settings: Settings, store: Store, reconciler: Reconciler | None
) -> ReconcileSchedule | None:
    """The timer, when the provider we sell through can be reconciled with (see
    AdminContext.schedule_state)."""
    if (
        reconciler is None
        or reconciler.name != settings.provider
        or settings.reconcile_interval_s == 0
    ):
        return None
    return ReconcileSchedule(
        ReconcileRunner(store, reconciler),
        interval_s=settings.reconcile_interval_s,
        window_s=settings.reconcile_window_s,
        actor=f"{ADMIN_SERVICE} schedule (pid {os.getpid()})",
    )
