"""reconcile_runs: every reconciliation run, and the lease that keeps them one at a time.

Two admin daemons on one database, or an operator's `reconcile` while the schedule's run is
going, must not ask the provider and apply its answer twice at once (harmless for the ledger,
which is idempotent, but a waste of the provider's rate limit and confusing in the audit). So a
run starts by taking the lease: one write job (BEGIN IMMEDIATE through Store.write, so exactly
one process decides at a time) that refuses while an unfinished run's `lease_until` is in the
future. The holder renews it while it works; a run whose process died stops renewing, and the
next taker marks it failed ("abandoned") once its lease has run out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import apsw

from ..errors import UnavailableError
from .rows import fetch_one, fetch_single, integer, rows_as, text

ERROR_MAX_CHARS: Final = 500


class Trigger(StrEnum):
    SCHEDULE = "schedule"  # the admin daemon's own timer
    RPC = "rpc"  # an operator called `reconcile`


class RunOutcome(StrEnum):
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ReconcileRun:
    id: int
    trigger: Trigger
    actor: str
    started_at: int
    finished_at: int | None
    lease_until: int
    outcome: RunOutcome
    since: int
    counts: dict[str, int] | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "trigger": self.trigger.value,
            "actor": self.actor,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "outcome": self.outcome.value,
            "since": self.since,
            "counts": self.counts,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class RunsSummary:
    """What info, check and /metrics show: the run going on, the last finished, the last ok."""

    running: ReconcileRun | None
    last_run: ReconcileRun | None
    last_success: ReconcileRun | None
    by_outcome: dict[RunOutcome, int] = field(default_factory=dict)


class LeaseHeld(UnavailableError, rpc_code=-32016):
    """Another run holds the lease; `holder` says which, who started it and until when."""

    def __init__(self, holder: ReconcileRun) -> None:
        super().__init__(
            f"reconciliation run #{holder.id} ({holder.trigger.value}, by {holder.actor}) "
            f"started at {holder.started_at} is still running (lease until {holder.lease_until})"
        )
        self.holder = holder


_COLUMNS: Final = (
    'id, "trigger", actor, started_at, finished_at, lease_until, outcome, since, counts, error'
)


def take_lease(
    conn: apsw.Connection, *, trigger: Trigger, actor: str, since: int, now: int, lease_s: int
) -> ReconcileRun:
    """Start a run holding the lease until `now + lease_s`, or raise LeaseHeld.

    Run it as one write job: the check and the insert must be one transaction. Runs whose lease
    ran out are closed as failed first, so `running` always means someone is at it.
    """
    expired = conn.execute(
        f"SELECT {_COLUMNS} FROM reconcile_runs WHERE outcome = 'running' AND lease_until <= ?",
        (now,),
    ).fetchall()  # all read before the first UPDATE below
    for stale in rows_as(ReconcileRun, expired):
        finish(
            conn, run_id=stale.id, outcome=RunOutcome.FAILED, now=stale.lease_until,
            error=f"abandoned: its lease ran out at {stale.lease_until} "
            "(the process running it stopped or hung)",
        )  # fmt: skip
    holder = running(conn, now=now)
    if holder is not None:
        raise LeaseHeld(holder)
    return fetch_single(
        conn,
        ReconcileRun,
        f'INSERT INTO reconcile_runs ("trigger", actor, started_at, lease_until, outcome, since)'
        f" VALUES (?, ?, ?, ?, 'running', ?) RETURNING {_COLUMNS}",
        (trigger.value, actor, now, now + lease_s, since),
    )


def renew(conn: apsw.Connection, *, run_id: int, now: int, lease_s: int) -> bool:
    """Extend a running run's lease; False if it is no longer running (someone closed it)."""
    conn.execute(
        "UPDATE reconcile_runs SET lease_until = ? WHERE id = ? AND outcome = 'running'",
        (now + lease_s, run_id),
    )
    return conn.changes() == 1


def finish(
    conn: apsw.Connection,
    *,
    run_id: int,
    outcome: RunOutcome,
    now: int,
    counts: dict[str, int] | None = None,
    error: str | None = None,
) -> bool:
    """Record how a run ended and release its lease; False if it had been closed already."""
    if outcome is RunOutcome.RUNNING:
        raise ValueError("a run finishes as ok or failed")
    conn.execute(
        "UPDATE reconcile_runs SET outcome = ?, finished_at = MAX(?, started_at), lease_until = ?,"
        " counts = ?, error = ? WHERE id = ? AND outcome = 'running'",
        (
            outcome.value,
            now,
            now,
            None if counts is None else json.dumps(counts, sort_keys=True),
            None if error is None else error[:ERROR_MAX_CHARS],
            run_id,
        ),
    )
    return conn.changes() == 1


def running(conn: apsw.Connection, *, now: int) -> ReconcileRun | None:
    """The run holding the lease at `now`, if any."""
    return fetch_one(
        conn,
        ReconcileRun,
        f"SELECT {_COLUMNS} FROM reconcile_runs WHERE outcome = 'running' AND lease_until > ?"
        " ORDER BY id DESC LIMIT 1",
        (now,),
    )


def get(conn: apsw.Connection, run_id: int) -> ReconcileRun | None:
    sql = f"SELECT {_COLUMNS} FROM reconcile_runs WHERE id = ?"
    return fetch_one(conn, ReconcileRun, sql, (run_id,))


def last_finished(conn: apsw.Connection, outcome: RunOutcome | None = None) -> ReconcileRun | None:
    """The latest run to have started and since finished (with `outcome`, if given)."""
    if outcome is None:
        return fetch_one(
            conn,
            ReconcileRun,
            f"SELECT {_COLUMNS} FROM reconcile_runs WHERE outcome != 'running'"
            " ORDER BY id DESC LIMIT 1",
        )
    return fetch_one(
        conn,
        ReconcileRun,
        f"SELECT {_COLUMNS} FROM reconcile_runs WHERE outcome = ? ORDER BY id DESC LIMIT 1",
        (outcome.value,),
    )


def count_by_outcome(conn: apsw.Connection) -> dict[RunOutcome, int]:
    """Runs recorded, per outcome (every outcome present, 0 when none)."""
    rows = conn.execute("SELECT outcome, COUNT(*) FROM reconcile_runs GROUP BY outcome")
    found = {text(outcome): integer(count) for outcome, count in rows}
    return {outcome: found.get(outcome.value, 0) for outcome in RunOutcome}


def summary(conn: apsw.Connection, *, now: int) -> RunsSummary:
    """A few indexed lookups: cheap enough for a read on the loop (info, a /metrics scrape)."""
    return RunsSummary(
        running=running(conn, now=now),
        last_run=last_finished(conn),
        last_success=last_finished(conn, RunOutcome.OK),
        by_outcome=count_by_outcome(conn),
    )
