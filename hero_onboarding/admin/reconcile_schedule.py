"""Reconciliation on a timer: the admin daemon heals missed webhooks without an operator.

A payment whose webhook never arrives (endpoint down for longer than Stripe retries, a
misconfigured signing key, a lost delivery) is found by the next run and credited. The first run
comes a few seconds after boot, not a full interval later, so a daemon restarted after an outage
catches up at once; then one every `--reconcile-interval-s`, each delay jittered by up to 10 %
so two daemons on one database drift apart instead of colliding on the lease every time.

A run that fails (provider down, database busy) is recorded as failed by the runner and logged
here at WARNING; the timer goes on. A run refused because another holds the lease is skipped
until the next tick. Cancelling the task (shutdown) interrupts a run between events, and the
runner records it as failed ("interrupted").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final

from ..store.reconcile_runs import LeaseHeld, Trigger
from .reconcile_run import ReconcileRunner, RunReport, describe_failure

log = logging.getLogger(__name__)

# "Soon after boot": long enough for the other daemons to come up (in sandbox mode the
# provider is a sibling process), short enough that nobody waits for it.
FIRST_RUN_DELAY_S: Final = 5.0
JITTER: Final = 0.1


@dataclass
class ReconcileSchedule:
    """When this daemon reconciles next, and the loop that does it. One per daemon."""

    runner: ReconcileRunner
    interval_s: float
    window_s: int
    actor: str  # who the audit and the runs table name: this daemon and its pid
    first_delay_s: float = FIRST_RUN_DELAY_S
    rng: random.Random = field(default_factory=random.Random)
    next_due: float | None = None  # unix time of the next run; None while one is going

    async def run_forever(self) -> None:
        delay = min(self.first_delay_s, self.interval_s)
        while True:
            delay *= self.rng.uniform(1 - JITTER, 1 + JITTER)
            self.next_due = self.runner.clock() + delay
            await asyncio.sleep(delay)
            self.next_due = None
            await self.run_once()
            delay = self.interval_s

    async def run_once(self) -> RunReport | None:
        """One scheduled run; never raises (but for cancellation): the timer must go on."""
        try:
            report = await self.runner.run(
                trigger=Trigger.SCHEDULE,
                actor=self.actor,
                since=self.runner.now() - self.window_s,
            )
        except LeaseHeld as held:
            log.info("scheduled reconciliation skipped: %s", held)
            return None
        except Exception as exc:
            log.warning(
                "scheduled reconciliation failed (next try in about %.0f s): %s",
                self.interval_s,
                describe_failure(exc),
            )
            return None
        moved = len(report.credited) + len(report.reversed)
        if moved:  # money the webhooks did not bring: worth an operator's look at why
            log.warning(
                "reconciliation run #%d applied %d payment event(s) no webhook had brought: "
                "%d credited, %d refunds or disputes",
                report.run_id, moved, len(report.credited), len(report.reversed),
            )  # fmt: skip
        else:
            log.info(
                "reconciliation run #%d: %d checked, nothing missing", report.run_id, report.checked
            )
        return report


@contextlib.asynccontextmanager
async def scheduled(schedule: ReconcileSchedule | None) -> AsyncIterator[None]:
    """Run `schedule` in the background for the body's duration (None: no schedule)."""
    if schedule is None:
        yield
        return
    task = asyncio.create_task(schedule.run_forever(), name="reconcile-schedule")
    task.add_done_callback(_said_if_broken)
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait({task})


def _said_if_broken(task: asyncio.Task[None]) -> None:
    """run_once catches everything but cancellation, so this is a bug: say so at once."""
    if not task.cancelled() and task.exception() is not None:
        log.error("the reconciliation schedule stopped: %r", task.exception())
