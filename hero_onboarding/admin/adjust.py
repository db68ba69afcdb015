"""A hand adjustment of a balance: idempotent by key, never below zero, audited."""

from __future__ import annotations

from typing import Any, Final

import apsw

from ..money import format_amount
from ..rpc.errors import RpcFault
from ..store import audit, balances, ledger
from ..store.ledger import EntryKind, LedgerEntry
from .schemas import KEY_REUSED, NOT_FOUND, WOULD_GO_NEGATIVE

ADJUSTMENT_PROVIDER: Final = "admin"


def adjust(
    conn: apsw.Connection, *, sid: str, amount: int, reason: str, key: str, actor: str, now: int
) -> dict[str, Any]:
    """`billing_adjust` as one write job: the ledger event, the balance and the audit row land
    together or not at all; a replay of the same key and values answers the first result."""
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
