"""The admin methods: read users, balances, payments, checkouts and deliveries; adjust a
balance (idempotent, audited); verify the ledger; reconcile with the provider.

Every read is one short query on the loop's reader connection; every write is one group-commit
job, so an adjustment and its audit row land together or not at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Final

import apsw

from .. import __version__
from ..billing import Outcome, fulfil
from ..config import ADMIN_SERVICE, Settings
from ..money import format_amount
from ..mycelium.address import AddressError, parse_address
from ..payments.base import ProviderError, Reconciler
from ..rpc.errors import RpcFault
from ..rpc.registry import ErrorSpec, Param, Registry
from ..store import Store, audit, balances, checkouts, deliveries, ledger, users
from ..store.checkouts import CheckoutStatus
from ..store.ledger import EntryKind, LedgerEntry

NOT_FOUND: Final = ErrorSpec(-32004, "not found")
KEY_REUSED: Final = ErrorSpec(-32010, "idempotency key already used with other values")
WOULD_GO_NEGATIVE: Final = ErrorSpec(-32011, "the balance would go negative")
NO_PROVIDER: Final = ErrorSpec(-32012, "no payment provider configured")
PROVIDER_DOWN: Final = ErrorSpec(-32013, "the payment provider could not be asked")

ADJUSTMENT_PROVIDER: Final = "admin"
MAX_AMOUNT: Final = 10**12
DEFAULT_RECONCILE_S: Final = 3 * 86400

SID: Final = {"type": "string", "minLength": 1, "maxLength": 64}
UNIX_TIME: Final = {"type": "integer", "minimum": 0, "maximum": 2**40}
PAGE: Final = (
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "page size"),
    Param("offset", {"type": "integer", "minimum": 0, "default": 0}, "rows to skip"),
)
OBJECT: Final = {"type": "object"}


@dataclass(frozen=True)
class AdminContext:
    settings: Settings
    store: Store
    reconciler: Reconciler | None
    clock: Callable[[], float] = time.time
    started_at: float = 0.0

    def now(self) -> int:
        return int(self.clock())


def build_registry(ctx: AdminContext) -> Registry:
    registry = Registry()
    store = ctx.store

    @registry.method("info", "Version, uptime, database, mode and row counts.", result=OBJECT)
    async def info() -> dict[str, Any]:
        def counts(conn: apsw.Connection) -> dict[str, Any]:
            return {
                "users": users.count(conn),
                "payment_events": ledger.count(conn),
                "checkouts": checkouts.count_by_status(conn),
                "webhook_deliveries": deliveries.count(conn),
                "admin_audit": audit.count(conn),
            }

        return {
            "service": ADMIN_SERVICE,
            "version": __version__,
            "uptime_s": round(ctx.clock() - ctx.started_at, 1),
            "db_path": str(ctx.settings.db_path),
            "mode": ctx.settings.mode,
            "currency": ctx.settings.currency,
            "reconcile_provider": ctx.reconciler.name if ctx.reconciler else None,
            "counts": await store.read(counts),
        }

    @registry.method(
        "user_get",
        "One user, by Mycelium address or by sid, with the balance.",
        params=(
            Param("address", {"type": "string", "maxLength": 100}, "a Mycelium address"),
            Param("sid", SID, "the user's sid"),
        ),
        result=OBJECT,
        errors=(NOT_FOUND,),
    )
    async def user_get(address: str | None = None, sid: str | None = None) -> dict[str, Any]:
        if (address is None) == (sid is None):
            raise RpcFault(-32602, "invalid params: give exactly one of address and sid")
        if address is not None:
            try:
                canonical = parse_address(address)
            except AddressError as exc:
                raise RpcFault(-32602, f"invalid params: address: {exc}") from None
            user = await store.read(partial(users.get_by_address, address=canonical))
        else:
            user = await store.read(partial(users.get, sid=sid))
        if user is None:
            raise RpcFault(NOT_FOUND.code, "no such user")
        balance = await store.read(partial(balances.get, sid=user.sid))
        return {**_user(user), "balance": _balance(balance) if balance else None}

    @registry.method("user_list", "Users in the order they joined.", params=PAGE, result=OBJECT)
    async def user_list(limit: int = 50, offset: int = 0) -> dict[str, Any]:
        def query(conn: apsw.Connection) -> dict[str, Any]:
            found = users.page(conn, limit=limit, offset=offset)
            return {"users": [_user(u) for u in found], "total": users.count(conn)}

        return {**await store.read(query), "limit": limit, "offset": offset}

    @registry.method(
        "billing_get",
        "A user's balance.",
        params=(Param("sid", SID, "the user's sid", required=True),),
        result=OBJECT,
        errors=(NOT_FOUND,),
    )
    async def billing_get(sid: str) -> dict[str, Any]:
        balance = await store.read(partial(balances.get, sid=sid))
        if balance is None:
            raise RpcFault(NOT_FOUND.code, "no such user")
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
        result=OBJECT,
    )
    async def payment_list(
        sid: str | None = None,
        kind: str | None = None,
        since: int | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        rows = await store.read(
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
        result=OBJECT,
    )
    async def checkout_list(
        status: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        rows = await store.read(
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
            Param("outcome", {"type": "string", "maxLength": 40}, "only this outcome"),
            Param("since", UNIX_TIME, "received at or after (unix seconds)"),
            *PAGE,
        ),
        result=OBJECT,
    )
    async def delivery_list(
        outcome: str | None = None, since: int | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        rows = await store.read(
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
                {
                    "type": "integer",
                    "minimum": -MAX_AMOUNT,
                    "maximum": MAX_AMOUNT,
                    "not": {"const": 0},
                },
                "signed, in minor units",
                required=True,
            ),
            Param(
                "reason", {"type": "string", "minLength": 3, "maxLength": 500}, "why", required=True
            ),
            Param(
                "idempotency_key",
                {"type": "string", "minLength": 8, "maxLength": 200},
                "unique per intended adjustment",
                required=True,
            ),
        ),
        result=OBJECT,
        errors=(NOT_FOUND, KEY_REUSED, WOULD_GO_NEGATIVE),
        wants_caller=True,
    )
    async def billing_adjust(
        caller: str, sid: str, amount: int, reason: str, idempotency_key: str
    ) -> dict[str, Any]:
        if amount == 0:
            raise RpcFault(-32602, "invalid params: amount: must not be 0")
        return await store.write(
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
        result=OBJECT,
    )
    async def ledger_verify() -> dict[str, Any]:
        mismatches = await store.read(ledger.verify_ledger)
        return {"ok": not mismatches, "mismatches": [asdict(m) for m in mismatches]}

    @registry.method(
        "reconcile",
        "Ask the provider for the paid checkouts since a time and credit any the ledger lacks "
        "(heals missed webhooks); says what it credited.",
        params=(Param("since", UNIX_TIME, "created at or after (default: three days ago)"),),
        result=OBJECT,
        errors=(NO_PROVIDER, PROVIDER_DOWN),
        wants_caller=True,
    )
    async def reconcile(caller: str, since: int | None = None) -> dict[str, Any]:
        if ctx.reconciler is None:
            raise RpcFault(
                NO_PROVIDER.code,
                "reconcile needs STRIPE_SANDBOX_SECRET_KEY (looked in: environment); it is not set",
            )
        start = ctx.now() - DEFAULT_RECONCILE_S if since is None else since
        try:
            paid = await ctx.reconciler.paid_since(start)
        except ProviderError as exc:
            raise RpcFault(PROVIDER_DOWN.code, str(exc)) from None
        credited, already, left = [], 0, []
        for event in paid:
            done = await fulfil(store, event)
            if done.outcome is Outcome.CREDITED:
                credited.append(
                    {"checkout_id": event.checkout_id, "sid": done.sid, "amount": done.amount,
                     "currency": event.currency}
                )  # fmt: skip
            elif done.outcome is Outcome.DUPLICATE:
                already += 1
            else:
                left.append(
                    {"checkout_id": event.checkout_id, "outcome": done.outcome.value,
                     "detail": done.detail}
                )  # fmt: skip
        result = {
            "since": start,
            "checked": len(paid),
            "credited": credited,
            "already_credited": already,
            "not_credited": left,
        }
        await store.write(
            partial(
                audit.record,
                at=ctx.now(),
                actor=caller,
                method="reconcile",
                params={"since": start},
                result=result,
            )
        )
        return result

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
        raise RpcFault(NOT_FOUND.code, "no such user")
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


def _checkout(checkout: checkouts.CheckoutSession) -> dict[str, Any]:
    return {**asdict(checkout), "status": checkout.status.value}
