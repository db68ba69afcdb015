"""The admin methods: read users, balances, payments, checkouts and deliveries; adjust a
balance (idempotent, audited); verify the ledger; reconcile with the provider.

Each method is a plain function of the AdminContext (context.py) and its parameters, declared
with its schemas by `@admin_method` and listed in METHODS; `build_registry` binds them to one
context. Shapes and error specs are in schemas.py, row encodings in rows.py, the adjustment's
write job in adjust.py.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Final

import apsw

from .. import __version__
from ..config import ADMIN_SERVICE
from ..mycelium.address import AddressError, parse_address
from ..payments.base import MAX_AMOUNT, ProviderError
from ..rpc.errors import INVALID_PARAMS, RpcFault
from ..rpc.registry import ErrorSpec, Param, Registry, RpcMethod
from ..store import (
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
from ..store.ledger import EntryKind
from ..store.reconcile_runs import LeaseHeld, Trigger
from .adjust import adjust
from .context import AdminContext
from .reconcile_run import LeaseLost
from .rows import (
    balance_json,
    checkout_json,
    dispute_json,
    payment_json,
    run_json,
    user_json,
)
from .schemas import (
    ADJUSTED,
    BALANCE,
    CHECKOUT,
    DELIVERY,
    DELIVERY_OUTCOMES,
    DISPUTE,
    INT,
    KEY_REUSED,
    NO_PROVIDER,
    NOT_FOUND,
    PAGE,
    PAYMENT,
    PROVIDER_DOWN,
    RECONCILE_STATUS,
    RECONCILED,
    RUN_IN_PROGRESS,
    SID,
    UNAVAILABLE,
    UNCERTAIN,
    UNIX_TIME,
    USER,
    WOULD_GO_NEGATIVE,
    list_schema,
    object_schema,
)

__all__ = ["METHODS", "AdminContext", "AdminMethod", "build_registry"]

Json = Any
Handler = Callable[..., Awaitable[dict[str, Any]]]  # (ctx, **params) -> the result


@dataclass(frozen=True)
class AdminMethod:
    """One method as the OpenRPC document shows it, and the function that answers it."""

    name: str
    summary: str
    handler: Handler
    params: tuple[Param, ...] = ()
    result: dict[str, Json] | None = None
    errors: tuple[ErrorSpec, ...] = ()
    wants_caller: bool = False  # the handler takes `caller=`: who is calling, for audits

    def bound_to(self, ctx: AdminContext) -> RpcMethod:
        return RpcMethod(
            self.name,
            partial(self.handler, ctx),
            self.summary,
            self.params,
            self.result or {},
            self.errors,
            self.wants_caller,
        )


def admin_method(
    name: str,
    summary: str,
    *,
    params: tuple[Param, ...] = (),
    result: dict[str, Json] | None = None,
    errors: tuple[ErrorSpec, ...] = (),
    wants_caller: bool = False,
) -> Callable[[Handler], AdminMethod]:
    """Declare `handler(ctx, **params)` as the method `name` (listed in METHODS below)."""

    def declare(handler: Handler) -> AdminMethod:
        return AdminMethod(name, summary, handler, params, result, errors, wants_caller)

    return declare


def build_registry(ctx: AdminContext) -> Registry:
    """Every admin method, answering with `ctx`."""
    registry = Registry()
    for method in METHODS:
        registry.add(method.bound_to(ctx))
    return registry


# -- reads -----------------------------------------------------------------------------------


def _counts(conn: apsw.Connection) -> dict[str, Any]:
    return {
        "users": users.count(conn),
        "payment_events": ledger.count(conn),
        "checkouts": checkouts.count_by_status(conn),
        "webhook_deliveries": deliveries.count(conn),
        "admin_audit": audit.count(conn),
    }


@admin_method(
    "info",
    "Version, uptime, database, mode, row counts, and reconciliation: whether this daemon "
    "runs it on a schedule, the run going on, the last run, the last success, when next due.",
    result=object_schema(
        ["service", "version", "uptime_s", "db_path", "mode", "counts", "reconcile"],
        reconcile=RECONCILE_STATUS,
    ),
    errors=(UNAVAILABLE,),
)
async def info(ctx: AdminContext) -> dict[str, Any]:
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
        "counts": await ctx.scan(_counts),
        "reconcile": {
            "schedule": ctx.schedule_state(),
            "interval_s": ctx.settings.reconcile_interval_s,
            "window_s": ctx.settings.reconcile_window_s,
            "running": run_json(runs.running),
            "last_run": run_json(runs.last_run),
            "last_success": run_json(runs.last_success),
            "next_due": None if next_due is None else int(next_due),
        },
    }


@admin_method(
    "user_get",
    "One user, by Mycelium address or by sid (exactly one of the two), with the balance.",
    params=(
        Param("address", {"type": "string", "maxLength": 100}, "a Mycelium address"),
        Param("sid", SID, "the user's sid"),
    ),
    result={**USER, "properties": {**USER["properties"], "balance": BALANCE}},
    errors=(NOT_FOUND, UNAVAILABLE),
)
async def user_get(
    ctx: AdminContext, address: str | None = None, sid: str | None = None
) -> dict[str, Any]:
    if sid is not None and address is None:
        user = await ctx.read(partial(users.get, sid=sid))
    elif address is not None and sid is None:
        try:
            canonical = parse_address(address)
        except AddressError as exc:
            raise RpcFault(INVALID_PARAMS, f"invalid params: address: {exc}") from None
        user = await ctx.read(partial(users.get_by_address, address=canonical))
    else:
        raise RpcFault(INVALID_PARAMS, "invalid params: give exactly one of address and sid")
    if user is None:
        raise RpcFault(NOT_FOUND.code, NOT_FOUND.message)
    balance = await ctx.read(partial(balances.get, sid=user.sid))
    return {**user_json(user), "balance": balance_json(balance) if balance else None}


def _user_page(conn: apsw.Connection, *, limit: int, offset: int) -> dict[str, Any]:
    found = users.page(conn, limit=limit, offset=offset)
    return {"users": [user_json(u) for u in found], "total": users.count(conn)}


@admin_method(
    "user_list",
    "Users in the order they joined, and how many there are.",
    params=PAGE,
    result=list_schema("users", USER, total=INT, limit=INT, offset=INT),
    errors=(UNAVAILABLE,),
)
async def user_list(ctx: AdminContext, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    page = await ctx.scan(partial(_user_page, limit=limit, offset=offset))
    return {**page, "limit": limit, "offset": offset}


@admin_method(
    "billing_get",
    "A user's balance.",
    params=(Param("sid", SID, "the user's sid", required=True),),
    result=BALANCE,
    errors=(NOT_FOUND, UNAVAILABLE),
)
async def billing_get(ctx: AdminContext, sid: str) -> dict[str, Any]:
    balance = await ctx.read(partial(balances.get, sid=sid))
    if balance is None:
        raise RpcFault(NOT_FOUND.code, NOT_FOUND.message)
    return balance_json(balance)


@admin_method(
    "payment_list",
    "Ledger events, newest first.",
    params=(
        Param("sid", SID, "only this user's"),
        Param("kind", {"enum": [k.value for k in EntryKind]}, "only this kind"),
        Param("since", UNIX_TIME, "recorded at or after (unix seconds)"),
        *PAGE,
    ),
    result=list_schema("payments", PAYMENT, limit=INT, offset=INT),
    errors=(UNAVAILABLE,),
)
async def payment_list(
    ctx: AdminContext,
    sid: str | None = None,
    kind: str | None = None,
    since: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    page = partial(
        ledger.page,
        sid=sid,
        kind=EntryKind(kind) if kind else None,
        since=since,
        limit=limit,
        offset=offset,
    )
    rows = await ctx.scan(page)
    return {"payments": [payment_json(row) for row in rows], "limit": limit, "offset": offset}


@admin_method(
    "checkout_list",
    "Checkout sessions, newest first.",
    params=(Param("status", {"enum": [s.value for s in CheckoutStatus]}, "only this"), *PAGE),
    result=list_schema("checkouts", CHECKOUT, limit=INT, offset=INT),
    errors=(UNAVAILABLE,),
)
async def checkout_list(
    ctx: AdminContext, status: str | None = None, limit: int = 50, offset: int = 0
) -> dict[str, Any]:
    wanted = CheckoutStatus(status) if status else None
    rows = await ctx.scan(partial(checkouts.page, status=wanted, limit=limit, offset=offset))
    return {"checkouts": [checkout_json(c) for c in rows], "limit": limit, "offset": offset}


@admin_method(
    "delivery_list",
    "Webhook deliveries received, newest first (refused ones too).",
    params=(
        Param("outcome", {"enum": DELIVERY_OUTCOMES}, "only this outcome"),
        Param("since", UNIX_TIME, "received at or after (unix seconds)"),
        *PAGE,
    ),
    result=list_schema("deliveries", DELIVERY, limit=INT, offset=INT),
    errors=(UNAVAILABLE,),
)
async def delivery_list(
    ctx: AdminContext,
    outcome: str | None = None,
    since: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    page = partial(deliveries.page, outcome=outcome, since=since, limit=limit, offset=offset)
    rows = await ctx.scan(page)
    return {"deliveries": [asdict(d) for d in rows], "limit": limit, "offset": offset}


@admin_method(
    "ledger_verify",
    "Every user whose balance is not the sum of their ledger events.",
    result=object_schema(
        ["ok", "mismatches"],
        ok={"type": "boolean"},
        mismatches={"type": "array", "items": {"type": "object"}},
    ),
    errors=(UNAVAILABLE,),
)
async def ledger_verify(ctx: AdminContext) -> dict[str, Any]:
    mismatches = await ctx.scan(ledger.verify_ledger)
    return {"ok": not mismatches, "mismatches": [asdict(m) for m in mismatches]}


def _dispute_page(conn: apsw.Connection, *, limit: int, offset: int) -> list[dict[str, Any]]:
    return [
        dispute_json(
            dispute, ledger.find(conn, dispute.provider, EntryKind.PURCHASE, dispute.payment_ref)
        )
        for dispute in reversals.open_disputes(conn, limit=limit, offset=offset)
    ]


@admin_method(
    "dispute_list",
    "Disputes holding money (open, or lost), oldest first, with the user whose credits "
    "they took; a dispute whose payment was never credited has sid null.",
    params=PAGE,
    result=list_schema("disputes", DISPUTE, limit=INT, offset=INT),
    errors=(UNAVAILABLE,),
)
async def dispute_list(ctx: AdminContext, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    disputes = await ctx.scan(partial(_dispute_page, limit=limit, offset=offset))
    return {"disputes": disputes, "limit": limit, "offset": offset}


# -- changes ---------------------------------------------------------------------------------


@admin_method(
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
    ctx: AdminContext, caller: str, sid: str, amount: int, reason: str, idempotency_key: str
) -> dict[str, Any]:
    if amount == 0:
        raise RpcFault(INVALID_PARAMS, "invalid params: amount: must not be 0")
    job = partial(
        adjust,
        sid=sid,
        amount=amount,
        reason=reason.strip(),
        key=idempotency_key,
        actor=caller,
        now=ctx.now(),
    )
    return await ctx.write(job)


@admin_method(
    "reconcile",
    "Ask the provider for the paid checkouts and refunds since a time and apply any the "
    "ledger lacks (heals missed webhooks); says what it changed. Each change is audited, "
    "and the run is recorded (see `info`). One run at a time: the daemon's schedule runs "
    "the same thing.",
    params=(Param("since", UNIX_TIME, "created at or after (default: --reconcile-window-s ago)"),),
    result=RECONCILED,
    errors=(NO_PROVIDER, PROVIDER_DOWN, RUN_IN_PROGRESS, UNCERTAIN, UNAVAILABLE),
    wants_caller=True,
)
async def reconcile(ctx: AdminContext, caller: str, since: int | None = None) -> dict[str, Any]:
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


# The order the OpenRPC document lists them in does not depend on this (it sorts by name).
METHODS: Final[tuple[AdminMethod, ...]] = (
    info,
    user_get,
    user_list,
    billing_get,
    payment_list,
    checkout_list,
    delivery_list,
    billing_adjust,
    ledger_verify,
    dispute_list,
    reconcile,
)
