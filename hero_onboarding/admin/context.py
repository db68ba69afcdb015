"""What the admin methods work with, passed to each (no globals): settings, the store, the
provider to reconcile with, the clock; and the store calls wrapped in the JSON-RPC errors an
operator can act on.

Point lookups run on the store's reader; anything that walks a table runs off the loop
(Store.scan); every write is one group-commit job, so a change and its audit row land together
or not at all. A write the database does not confirm in time answers -32014: it may have
happened, so the caller retries with the same idempotency key, never a new one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import apsw

from ..config import ProviderName, Settings
from ..payments.base import Reconciler
from ..rpc.errors import RpcFault
from ..store import Store, StoreError
from ..store.db import DISK_ERRORS
from .reconcile_run import ReconcileRunner
from .reconcile_schedule import ReconcileSchedule
from .schemas import UNAVAILABLE, UNCERTAIN

T = TypeVar("T")


@dataclass(frozen=True)
class AdminContext:
    """What every admin method is handed: the daemon's settings, store, provider and clock."""

    settings: Settings
    store: Store
    reconciler: Reconciler | None
    clock: Callable[[], float] = time.time
    started: float = field(default_factory=time.monotonic)
    schedule: ReconcileSchedule | None = None  # this daemon's timer, when it runs one

    def now(self) -> int:
        return int(self.clock())

    @property
    def runner(self) -> ReconcileRunner | None:
        if self.reconciler is None:
            return None
        return ReconcileRunner(self.store, self.reconciler, clock=self.clock)

    def schedule_state(self) -> str:
        """Whether this daemon reconciles on its own, in words an operator can act on."""
        if self.reconciler is None:
            return "off: no STRIPE_SANDBOX_SECRET_KEY"
        if self.settings.provider != ProviderName.STRIPE:
            return f"off: --provider={self.settings.provider} takes no payments through Stripe"
        if self.settings.reconcile_interval_s == 0:
            return "off: --reconcile-interval-s=0"
        if self.schedule is None:
            return "off: not started by this daemon"
        return f"every {self.settings.reconcile_interval_s} s"

    async def read(self, query: Callable[[apsw.Connection], T]) -> T:
        """A short read on the loop, or -32015 when the database cannot answer."""
        try:
            return await self.store.read(query)
        except (StoreError, apsw.Error) as exc:
            raise RpcFault(UNAVAILABLE.code, f"{UNAVAILABLE.message}: {exc}") from None

    async def scan(self, query: Callable[[apsw.Connection], T]) -> T:
        """A read that walks a table, off the loop, or -32015."""
        try:
            return await self.store.scan(query)
        except (StoreError, apsw.Error) as exc:
            raise RpcFault(UNAVAILABLE.code, f"{UNAVAILABLE.message}: {exc}") from None

    async def write(self, job: Callable[[apsw.Connection], T]) -> T:
        """A write; when the database is slow to confirm, -32014: it may have happened; when the
        disk refuses it (full, I/O error, read-only), -32015 with SQLite's reason."""
        try:
            return await self.store.write(job)
        except (TimeoutError, apsw.BusyError):
            raise RpcFault(UNCERTAIN.code, UNCERTAIN.message) from None
        except (StoreError, *DISK_ERRORS) as exc:  # refused by the disk: nothing was written
            raise RpcFault(UNAVAILABLE.code, f"{UNAVAILABLE.message}: {exc}") from None
