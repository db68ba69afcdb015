"""The admin methods: read users, balances, payments, checkouts and deliveries; adjust a
balance (idempotent, audited); verify the ledger; reconcile with the provider.

Point lookups run on the loop's reader; anything that walks a table runs off the loop
(Store.scan); every write is one group-commit job, so a change and its audit row land together
or not at all. A write the database does not confirm in time answers -32014: it may have
happened, so the caller retries with the same idempotency key, never a new one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Final, TypeVar

import apsw

from .. import __version__
from ..billing import Outcome
from ..config import ADMIN_SERVICE, Settings
from ..money import format_amount
from ..mycelium.address import AddressError, parse_address
from ..payments.base import MAX_AMOUNT, ProviderError, Reconciler
from ..rpc.errors import INVALID_PARAMS, RpcFault
from ..rpc.registry import ErrorSpec, Param, Registry
from ..store import (
    Store,
    StoreError,
    audit,
    balances,
    checkouts,
    deliveries,
    ledger,
    reconcile_runs,
    reversals,
    users,
)
from ..store.checkouts import CheckoutStatus
from ..store.db import DISK_ERRORS
from ..store.ledger import EntryKind, LedgerEntry
from ..store.reconcile_runs import LeaseHeld, RunOutcome, Trigger
from .reconcile_run import LeaseLost, ReconcileRunner
from .reconcile_schedule import ReconcileSchedule

T = TypeVar("T")
Json = Any

NOT_FOUND: Final = ErrorSpec(-32004, "no such user")
KEY_REUSED: Final = ErrorSpec(-32010, "idempotency key already used with other values")
WOULD_GO_NEGATIVE: Final = ErrorSpec(-32011, "the balance would go negative")
NO_PROVIDER: Final = ErrorSpec(-32012, "no payment provider configured")
PROVIDER_DOWN: Final = ErrorSpec(-32013, "the payment provider could not be asked")
UNCERTAIN: Final = ErrorSpec(
    -32014, "the database did not confirm in time: retry with the same idempotency key"
)
UNAVAILABLE: Final = ErrorSpec(-32015, "the database is unavailable")
RUN_IN_PROGRESS: Final = ErrorSpec(
    -32016, "a reconciliation run is in progress: try again when it has finished"
)

ADJUSTMENT_PROVIDER: Final = "admin"

# -- schemas (the OpenRPC document shows these) ----------------------------------------------

SID: Final = {"type": "string", "minLength": 1, "maxLength": 64}
UNIX_TIME: Final = {"type": "integer", "minimum": 0, "maximum": 2**40}
PAGE: Final = (
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "page size"),
    Param(
        "offset", {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0}, "rows to skip"
    ),
)
INT: Final = {"type": "integer"}
TEXT: Final = {"type": "string"}
MAYBE_TEXT: Final = {"type": ["string", "null"]}
MAYBE_INT: Final = {"type": ["integer", "null"]}


def _object(required: list[str], **properties: Json) -> dict[str, Json]:
    return {"type": "object", "required": required, "properties": properties}


def _list_of(name: str, item: dict[str, Json], **more: Json) -> dict[str, Json]:
    array = {"type": "array", "items": item}
    return _object([name, *more], **{name: array}, **more)


USER: Final = _object(
    ["sid", "mycelium_address", "created_at"], sid=TEXT, mycelium_address=TEXT, created_at=INT
)
BALANCE: Final = _object(
    ["sid", "balance", "currency", "formatted", "updated_at"],
    sid=TEXT, balance=INT, currency=TEXT, formatted=TEXT, updated_at=INT,
)  # fmt: skip
PAYMENT: Final = _object(
    ["id", "sid", "provider", "kind", "external_ref", "amount", "currency", "created_at"],
    id=INT, sid=TEXT, provider=TEXT, kind={"enum": [k.value for k in EntryKind]},
    external_ref=TEXT, amount=INT, currency=TEXT, event_id=MAYBE_TEXT, checkout_id=MAYBE_TEXT,
    created_at=INT,
)  # fmt: skip
CHECKOUT: Final = _object(
    ["id", "sid", "provider", "amount", "currency", "status", "created_at"],
    id=TEXT, sid=TEXT, provider=TEXT, amount=INT, currency=TEXT,
    status={"enum": [s.value for s in CheckoutStatus]}, url=MAYBE_TEXT, created_at=INT,
    expires_at=MAYBE_INT, completed_at=MAYBE_INT,
)  # fmt: skip
DELIVERY_OUTCOMES: Final = [*(o.value for o in Outcome), "rejected", "error"]
DELIVERY: Final = _object(
    ["received_at", "provider", "verified", "outcome"],
    received_at=INT, provider=TEXT, verified={"type": "boolean"},
    outcome={"enum": DELIVERY_OUTCOMES}, detail=TEXT, event_id=MAYBE_TEXT, type=MAYBE_TEXT,
)  # fmt: skip
DISPUTE: Final = _object(
    ["id", "provider", "payment", "amount", "currency", "status", "sid", "opened_at"],
    id=TEXT, provider=TEXT, payment=TEXT, amount=INT, currency=TEXT, status=TEXT,
    sid=MAYBE_TEXT, opened_at=INT, updated_at=INT,
)  # fmt: skip
ADJUSTED: Final = _object(
    ["sid", "amount", "currency", "balance", "formatted", "idempotency_key", "audit_id",
     "replayed"],
    sid=TEXT, amount=INT, currency=TEXT, balance=INT, formatted=TEXT, idempotency_key=TEXT,
    audit_id=INT, replayed={"type": "boolean"},
)  # fmt: skip
RECONCILED: Final = _object(
    ["run_id", "since", "checked", "credited", "reversed", "already_done", "not_credited"],
    run_id=INT, since=INT, checked=INT, already_done=INT,
    credited={"type": "array", "items": {"type": "object"}},
    reversed={"type": "array", "items": {"type": "object"}},
    not_credited={"type": "array", "items": {"type": "object"}},
)  # fmt: skip
RUN: Final = _object(
    ["id", "trigger", "actor", "started_at", "outcome", "since"],
    id=INT, trigger={"enum": [t.value for t in Trigger]}, actor=TEXT, started_at=INT,
    finished_at=MAYBE_INT, outcome={"enum": [o.value for o in RunOutcome]}, since=INT,
    counts={"type": ["object", "null"]}, error=MAYBE_TEXT,
)  # fmt: skip
MAYBE_RUN: Final = {"oneOf": [RUN, {"type": "null"}]}
RECONCILE_STATUS: Final = _object(
    ["schedule", "interval_s", "window_s", "running", "last_run", "last_success", "next_due"],
    schedule=TEXT, interval_s=INT, window_s=INT, running=MAYBE_RUN, last_run=MAYBE_RUN,
    last_success=MAYBE_RUN, next_due=MAYBE_INT,
)  # fmt: skip


@dataclass(frozen=True)
class AdminContext:
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
        if self.settings.provider != "stripe":
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


def build_registry(ctx: AdminContext) -> Registry:
    registry = Registry()

    @registry.method(
        "info",
        "Version, uptime, database, mode, row counts, and reconciliation: whether this daemon "
        "runs it on a schedule, the run going on, the last run, the last success, when next due.",
        result=_object(
            ["service", "version", "uptime_s", "db_path", "mode", "counts", "reconcile"],
            reconcile=RECONCILE_STATUS,
        ),
        errors=(UNAVAILABLE,),
    )
    async def info() -> dict[str, Any]:
        def counts(conn: apsw.Connection) -> dict[str, Any]:
            return {
                "users": users.count(conn),
                "payment_events": ledger.count(conn),
                "checkouts": checkouts.count_by_status(conn),
                "webhook_deliveries": deliveries.count(conn),
                "admin_audit": audit.count(conn),
            }

        runs = await ctx.read(partial(reconcile_runs.summary, now=ctx.now()))
        next_due = ctx.schedule.next_due if ctx.schedule is not None else None
        return {
            "service": ADMIN_SERVICE,
            "version": __version__,
            "uptime_s": round(time.monotonic() - ctx.started, 1),
            "db_path": str(ctx.settings.db_path),
            "mode": ctx.settings.mode,
            "currency": ctx.settings.currency,
            "reconcile_provider": ctx.reconciler.name if ctx.reconciler else None,
            "counts": await ctx.scan(counts),
            "reconcile": {
                "schedule": ctx.schedule_state(),
                "interval_s": ctx.settings.reconcile_interval_s,
                "window_s": ctx.settings.reconcile_window_s,
                "running": _run(runs.running),
                "last_run": _run(runs.last_run),
                "last_success": _run(runs.last_success),
                "next_due": None if next_due is None else int(next_due),
            },
        }

    @registry.method(
        "user_get",
        "One user, by Mycelium address or by sid (exactly one of the two), with the balance.",
        params=(
            Param("address", {"type": "string", "maxLength": 100}, "a Mycelium address"),
            Param("sid", SID, "the user's sid"),
        ),
        result={**USER, "properties": {**USER["properties"], "balance": BALANCE}},
        errors=(NOT_FOUND, UNAVAILABLE),
    )
    async def user_get(address: str | None = None, sid: str | None = None) -> dict[str, Any]:
        if (address is None) == (sid is None):
            raise RpcFault(INVALID_PARAMS, "invalid params: give exactly one of address and sid")
        if address is not None:
            try:
                canonical = parse_address(address)
            except AddressError as exc:
                raise RpcFault(INVALID_PARAMS, f"invalid params: address: {exc}") from None
            user = await ctx.read(partial(users.get_by_address, address=canonical))
        else:
            user = await ctx.read(partial(users.get, sid=sid))
        if user is None:
            raise RpcFault(NOT_FOUND.code, NOT_FOUND.message)
        balance = await ctx.read(partial(balances.get, sid=user.sid))
        return {**_user(user), "balance": _balance(balance) if balance else None}

    @registry.method(
        "user_list",
        "Users in the order they joined, and how many there are.",
        params=PAGE,
        result=_list_of("users", USER, total=INT, limit=INT, offset=INT),
        errors=(UNAVAILABLE,),
    )
    async def user_list(limit: int = 50, offset: int = 0) -> dict[str, Any]:
        def query(conn: apsw.Connection) -> dict[str, Any]:
            found = users.page(conn, limit=limit, offset=offset)
            return {"users": [_user(u) for u in found], "total": users.count(conn)}

        return {**await ctx.scan(query), "limit": limit, "offset": offset}

    @registry.method(
        "billing_get",
        "A user's balance.",
        params=(Param("sid", SID, "the user's sid", required=True),),
        result=BALANCE,
        errors=(NOT_FOUND, UNAVAILABLE),
    )
    async def billing_get(sid: str) -> dict[str, Any]:
        balance = await ctx.read(partial(balances.get, sid=sid))
        if balance is None:
            raise RpcFault(NOT_FOUND.code, NOT_FOUND.message)
        return _balance(balance)

    @registry.method(
        "payment_list",
        "Ledger events, newest first.",
        params=(
            Param("sid", SID, "only this user's"),
            Param("kind", {"enum": [k.value for k in EntryKind]}, "only this kind"),
            Param("since", UNIX_TIME, "recorded at or after (unix seconds)"),
            *PAGE,
        ),
        result=_list_of("payments", PAYMENT, limit=INT, offset=INT),
        errors=(UNAVAILABLE,),
    )
    async def payment_list(
        sid: str | None = None,
        kind: str | None = None,
        since: int | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        rows = await ctx.scan(
            partial(
                ledger.page,
                sid=sid,
                kind=EntryKind(kind) if kind else None,
                since=since,
                limit=limit,
                offset=offset,
            )
        )
        return {"payments": [_payment(row) for row in rows], "limit": limit, "offset": offset}

    @registry.method(
        "checkout_list",
        "Checkout sessions, newest first.",
        params=(Param("status", {"enum": [s.value for s in CheckoutStatus]}, "only this"), *PAGE),
        result=_list_of("checkouts", CHECKOUT, limit=INT, offset=INT),
        errors=(UNAVAILABLE,),
    )
    async def checkout_list(
        status: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        rows = await ctx.scan(
            partial(
                checkouts.page,
                status=CheckoutStatus(status) if status else None,
                limit=limit,
                offset=offset,
            )
        )
        return {"checkouts": [_checkout(c) for c in rows], "limit": limit, "offset": offset}

    @registry.method(
        "delivery_list",
        "Webhook deliveries received, newest first (refused ones too).",
        params=(
            Param("outcome", {"enum": DELIVERY_OUTCOMES}, "only this outcome"),
            Param("since", UNIX_TIME, "received at or after (unix seconds)"),
            *PAGE,
        ),
        result=_list_of("deliveries", DELIVERY, limit=INT, offset=INT),
        errors=(UNAVAILABLE,),
    )
    async def delivery_list(
        outcome: str | None = None, since: int | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        rows = await ctx.scan(
            partial(deliveries.page, outcome=outcome, since=since, limit=limit, offset=offset)
        )
        return {"deliveries": [asdict(d) for d in rows], "limit": limit, "offset": offset}

    @registry.method(
        "billing_adjust",
        "Credit or debit a balance by hand: an audited `adjustment` ledger event. Replaying "
        "the same idempotency_key with the same values returns the first answer.",
        params=(
            Param("sid", SID, "the user's sid", required=True),
            Param(
                "amount",
                {"type": "integer", "minimum": -MAX_AMOUNT, "maximum": MAX_AMOUNT},
                "signed, in minor units, not 0",
                required=True,
            ),
            Param(
                "reason",
                {"type": "string", "minLength": 3, "maxLength": 500, "pattern": r"\S.*\S"},
                "why (kept in the audit)",
                required=True,
            ),
            Param(
                "idempotency_key",
                {"type": "string", "minLength": 8, "maxLength": 200},
                "unique per intended adjustment",
                required=True,
            ),
        ),
        result=ADJUSTED,
        errors=(NOT_FOUND, KEY_REUSED, WOULD_GO_NEGATIVE, UNCERTAIN, UNAVAILABLE),
        wants_caller=True,
    )
    async def billing_adjust(
        caller: str, sid: str, amount: int, reason: str, idempotency_key: str
    ) -> dict[str, Any]:
        if amount == 0:
            raise RpcFault(INVALID_PARAMS, "invalid params: amount: must not be 0")
        return await ctx.write(
            partial(
                _adjust,
                sid=sid,
                amount=amount,
                reason=reason.strip(),
                key=idempotency_key,
                actor=caller,
                now=ctx.now(),
            )
        )

    @registry.method(
        "ledger_verify",
        "Every user whose balance is not the sum of their ledger events.",
        result=_object(
            ["ok", "mismatches"],
            ok={"type": "boolean"},
            mismatches={"type": "array", "items": {"type": "object"}},
        ),
        errors=(UNAVAILABLE,),
    )
    async def ledger_verify() -> dict[str, Any]:
        mismatches = await ctx.scan(ledger.verify_ledger)
        return {"ok": not mismatches, "mismatches": [asdict(m) for m in mismatches]}

    @registry.method(
        "dispute_list",
        "Disputes holding money (open, or lost), oldest first, with the user whose credits "
        "they took; a dispute whose payment was never credited has sid null.",
        params=PAGE,
        result=_list_of("disputes", DISPUTE, limit=INT, offset=INT),
        errors=(UNAVAILABLE,),
    )
    async def dispute_list(limit: int = 50, offset: int = 0) -> dict[str, Any]:
        def query(conn: apsw.Connection) -> list[dict[str, Any]]:
            return [
                _dispute(dispute, ledger.find(conn, dispute.provider, EntryKind.PURCHASE,
                                              dispute.payment_ref))
                for dispute in reversals.open_disputes(conn, limit=limit, offset=offset)
            ]  # fmt: skip

        return {"disputes": await ctx.scan(query), "limit": limit, "offset": offset}

    @registry.method(
        "reconcile",
        "Ask the provider for the paid checkouts and refunds since a time and apply any the "
        "ledger lacks (heals missed webhooks); says what it changed. Each change is audited, "
        "and the run is recorded (see `info`). One run at a time: the daemon's schedule runs "
        "the same thing.",
        params=(
            Param("since", UNIX_TIME, "created at or after (default: --reconcile-window-s ago)"),
        ),
        result=RECONCILED,
        errors=(NO_PROVIDER, PROVIDER_DOWN, RUN_IN_PROGRESS, UNCERTAIN, UNAVAILABLE),
        wants_caller=True,
    )
    async def reconcile(caller: str, since: int | None = None) -> dict[str, Any]:
        runner = ctx.runner
        if runner is None:
            raise RpcFault(
                NO_PROVIDER.code,
                "reconcile needs STRIPE_SANDBOX_SECRET_KEY (looked in: environment); it is not set",
            )
        start = ctx.now() - ctx.settings.reconcile_window_s if since is None else since
        try:
            report = await runner.run(trigger=Trigger.RPC, actor=caller, since=start)
        except LeaseHeld as held:
            raise RpcFault(
                RUN_IN_PROGRESS.code, RUN_IN_PROGRESS.message, held.holder.as_json()
            ) from None
        except LeaseLost as lost:
            raise RpcFault(RUN_IN_PROGRESS.code, str(lost)) from None
        except ProviderError as exc:
            raise RpcFault(PROVIDER_DOWN.code, str(exc)) from None
        except (TimeoutError, apsw.BusyError):
            raise RpcFault(
                UNCERTAIN.code,
                "the database did not confirm in time: some events may have been applied; "
                "reconciling again is safe (each event is applied once)",
            ) from None
        except (StoreError, apsw.Error) as exc:
            raise RpcFault(UNAVAILABLE.code, f"{UNAVAILABLE.message}: {exc}") from None
        return report.as_result()

    return registry


def _adjust(
    conn: apsw.Connection, *, sid: str, amount: int, reason: str, key: str, actor: str, now: int
) -> dict[str, Any]:
    params = {"sid": sid, "amount": amount, "reason": reason, "idempotency_key": key}
    earlier = audit.find_by_key(conn, key)
    if earlier is not None:
        if earlier.method == "billing_adjust" and earlier.params == params:
            return {**earlier.result, "audit_id": earlier.id, "replayed": True}
        raise RpcFault(
            KEY_REUSED.code,
            f"idempotency_key {key!r} was used for another change (audit #{earlier.id}); "
            "use a new key for a new adjustment",
        )
    balance = balances.get(conn, sid)
    if balance is None:
        raise RpcFault(NOT_FOUND.code, NOT_FOUND.message)
    if balance.credit_balance + amount < 0:
        raise RpcFault(
            WOULD_GO_NEGATIVE.code,
            f"the balance is {format_amount(balance.credit_balance, balance.currency)}; "
            f"adjusting by {format_amount(amount, balance.currency)} would make it negative",
        )
    entry = LedgerEntry(
        sid, ADJUSTMENT_PROVIDER, EntryKind.ADJUSTMENT, key, amount, balance.currency
    )
    if not ledger.append(conn, entry, now=now):
        raise RpcFault(KEY_REUSED.code, f"idempotency_key {key!r} is already in the ledger")
    after = balances.get(conn, sid)
    assert after is not None
    result = {
        "sid": sid,
        "amount": amount,
        "currency": after.currency,
        "balance": after.credit_balance,
        "formatted": format_amount(after.credit_balance, after.currency),
        "idempotency_key": key,
    }
    audit_id = audit.record(
        conn, at=now, actor=actor, method="billing_adjust", params=params, result=result,
        idempotency_key=key,
    )  # fmt: skip
    return {**result, "audit_id": audit_id, "replayed": False}


def _run(run: reconcile_runs.ReconcileRun | None) -> dict[str, Any] | None:
    return None if run is None else run.as_json()


def _user(user: users.User) -> dict[str, Any]:
    return {
        "sid": user.sid,
        "mycelium_address": user.mycelium_address,
        "created_at": user.created_at,
    }


def _balance(balance: balances.Balance) -> dict[str, Any]:
    return {
        "sid": balance.sid,
        "balance": balance.credit_balance,
        "currency": balance.currency,
        "formatted": format_amount(balance.credit_balance, balance.currency),
        "updated_at": balance.updated_at,
    }


def _payment(row: ledger.RecordedEntry) -> dict[str, Any]:
    entry = row.entry
    return {
        "id": row.id,
        "sid": entry.sid,
        "provider": entry.provider,
        "kind": entry.kind.value,
        "external_ref": entry.external_ref,
        "amount": entry.amount,
        "currency": entry.currency,
        "event_id": entry.event_id,
        "checkout_id": entry.checkout_id,
        "created_at": row.created_at,
    }


def _dispute(dispute: reversals.Reversal, purchase: LedgerEntry | None) -> dict[str, Any]:
    return {
        "id": dispute.ref,
        "provider": dispute.provider,
        "payment": dispute.payment_ref,
        "amount": dispute.amount,
        "currency": dispute.currency,
        "status": dispute.status,
        "sid": purchase.sid if purchase else None,
        "opened_at": dispute.first_seen,
        "updated_at": dispute.updated_at,
    }


def _checkout(checkout: checkouts.CheckoutSession) -> dict[str, Any]:
    return {**asdict(checkout), "status": checkout.status.value}
