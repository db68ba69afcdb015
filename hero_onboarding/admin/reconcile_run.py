"""One reconciliation run: take the lease, ask the provider, apply what the ledger lacks, record.

The `reconcile` method and the schedule (reconcile_schedule.py) both run through here, so an
operator's run and the timer's are the same code, hold the same lease and leave the same
reconcile_runs row. Each reported event is applied and audited in its own transaction
(`_reconcile_one`), so a run stopped half way (shutdown, provider gone) leaves every event
either applied and audited or untouched; the next run picks up the rest.

While a run works, a heartbeat renews its lease; if the lease cannot be renewed (someone
declared the run dead) the run stops rather than work without it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, TypeVar

import apsw

from ..billing import ALREADY_KNOWN, MOVED_MONEY, Outcome, apply_event
from ..errors import UnavailableError
from ..payments.base import ProviderEvent, Reconciler
from ..store import Store, audit, reconcile_runs
from ..store.reconcile_runs import ReconcileRun, RunOutcome, Trigger

T = TypeVar("T")
log = logging.getLogger(__name__)

# A run's lease is renewed every RENEW_EVERY_S while it works, so a process that dies holds
# it at most LEASE_S: long enough to survive a slow write or a loop busy for a while, short
# enough that the next daemon (or operator) is not kept waiting long after a crash.
LEASE_S: Final = 120
RENEW_EVERY_S: Final = 30.0
INTERRUPTED: Final = "interrupted: the admin daemon stopped during the run"


class LeaseLost(UnavailableError, RuntimeError, rpc_code=-32016):
    """The run's lease could not be renewed: another taker found it expired and closed it."""


@dataclass
class RunReport:
    """What one run did: the `reconcile` method's answer, and the counts its row keeps."""

    run_id: int
    since: int
    checked: int = 0
    credited: list[dict[str, Any]] = field(default_factory=list)
    reversed: list[dict[str, Any]] = field(default_factory=list)  # refunds, disputes, theirs
    already_done: int = 0
    not_credited: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "checked": self.checked,
            "credited": len(self.credited),
            "reversed": len(self.reversed),
            "already_done": self.already_done,
            "not_credited": len(self.not_credited),
        }

    def as_result(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "since": self.since,
            "checked": self.checked,
            "credited": self.credited,
            "reversed": self.reversed,
            "already_done": self.already_done,
            "not_credited": self.not_credited,
        }


@dataclass(frozen=True)
class ReconcileRunner:
    """Runs reconciliation against one provider and database; holds no state between runs."""

    store: Store
    reconciler: Reconciler
    clock: Callable[[], float] = time.time
    lease_s: int = LEASE_S
    renew_every_s: float = RENEW_EVERY_S

    def now(self) -> int:
        return int(self.clock())

    async def run(self, *, trigger: Trigger, actor: str, since: int) -> RunReport:
        """One run, recorded from start to end.

        Raises LeaseHeld when another run is going (nothing is recorded then), and whatever
        stopped the run (ProviderError, a store error, cancellation) once it is recorded as
        failed. The report comes back even if recording the success itself failed: the
        events were applied, and the row's lease runs out on its own.
        """
        run = await self.store.write(
            partial(
                reconcile_runs.take_lease,
                trigger=trigger,
                actor=actor,
                since=since,
                now=self.now(),
                lease_s=self.lease_s,
            )
        )
        try:
            report = await self._holding_lease(run, self._reconcile(run, actor))
        except BaseException as exc:
            await self._record_failure(run, exc)
            raise
        try:
            await self.store.write(
                partial(
                    reconcile_runs.finish,
                    run_id=run.id,
                    outcome=RunOutcome.OK,
                    now=self.now(),
                    counts=report.counts(),
                )
            )
        except Exception as exc:
            log.warning("reconciliation run #%d succeeded but was not recorded: %s", run.id, exc)
        return report

    async def _reconcile(self, run: ReconcileRun, actor: str) -> RunReport:
        reported = await self.reconciler.settled_since(run.since)
        report = RunReport(run.id, run.since, checked=len(reported))
        for event in reported:
            outcome, detail = await self.store.write(
                partial(_reconcile_one, event=event, actor=actor, run_id=run.id, now=self.now())
            )
            if outcome is Outcome.CREDITED:
                report.credited.append(detail)
            elif outcome in MOVED_MONEY:
                report.reversed.append({**detail, "outcome": outcome.value})
            elif outcome in ALREADY_KNOWN:
                report.already_done += 1
            else:
                report.not_credited.append(detail)
        return report

    async def _holding_lease(self, run: ReconcileRun, work: Awaitable[T]) -> T:
        """Await `work`, renewing the lease meanwhile; stop it if the lease is lost."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.renew_every_s)
                if done:
                    return task.result()
                renewed = await self.store.write(
                    partial(
                        reconcile_runs.renew, run_id=run.id, now=self.now(), lease_s=self.lease_s
                    )
                )
                if not renewed:
                    raise LeaseLost(f"run #{run.id} lost its lease: another run declared it dead")
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})

    async def _record_failure(self, run: ReconcileRun, exc: BaseException) -> None:
        """Close the run as failed with a one-line reason; shielded, so a shutdown's
        cancellation does not cut the record short. If even that fails, the lease runs out."""
        error = INTERRUPTED if isinstance(exc, asyncio.CancelledError) else describe_failure(exc)
        job = partial(
            reconcile_runs.finish, run_id=run.id, outcome=RunOutcome.FAILED, now=self.now(),
            error=error,
        )  # fmt: skip
        try:
            await asyncio.shield(self.store.write(job))
        except asyncio.CancelledError:
            pass  # cancelled again while recording: the write still goes ahead in the store
        except Exception as record_exc:
            log.warning("reconciliation run #%d failed (%s) and could not be recorded: %s",
                        run.id, error, record_exc)  # fmt: skip


def describe_failure(exc: BaseException) -> str:
    """What went wrong, in one line: the exception's own message, which for ProviderError is
    written to be shown (never a key), and for store errors names the database problem."""
    if isinstance(exc, TimeoutError | apsw.BusyError):
        return f"{type(exc).__name__}: the database did not confirm a write in time"
    return f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no detail'}"


def _reconcile_one(
    conn: apsw.Connection, *, event: ProviderEvent, actor: str, run_id: int, now: int
) -> tuple[Outcome, dict[str, Any]]:
    """Apply one reported event and, if it moved money, audit it: one transaction."""
    done = apply_event(conn, event, now=now)
    detail: dict[str, Any] = {
        "checkout_id": event.checkout_id,
        "payment": event.external_ref,
        "sid": done.sid,
        "amount": done.amount,
        "currency": event.currency,
    }
    if done.outcome in MOVED_MONEY:
        audit.record(
            conn, at=now, actor=actor, method="reconcile",
            params={"event_id": event.event_id, "kind": event.kind.value, "run_id": run_id},
            result=detail,
        )  # fmt: skip
    elif done.outcome not in ALREADY_KNOWN:
        detail = {"checkout_id": event.checkout_id, "outcome": done.outcome.value,
                  "detail": done.detail or event.note}  # fmt: skip
    return done.outcome, detail
