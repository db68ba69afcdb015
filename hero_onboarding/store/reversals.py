"""payment_reversals: every refund and dispute a provider reported, whether or not its payment
has been credited yet.

Reports arrive in any order and any number of times; billing merges each into what is known
(a refund that failed stays failed, a running total only grows) and derives from these rows
what the ledger should hold for the payment.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import apsw

from .rows import fetch_one, rows_as


class ReversalKind(StrEnum):
    REFUND = "refund"  # one refund, by its id
    REFUND_TOTAL = "refund_total"  # the payment's running total refunded (refunds not named)
    DISPUTE = "dispute"  # one dispute, by its id


@dataclass(frozen=True, slots=True)
class Reversal:
    """One refund or dispute of a payment. `active`: it takes `amount` back."""

    provider: str
    kind: ReversalKind
    ref: str
    payment_ref: str
    amount: int
    currency: str
    active: bool
    status: str
    event_id: str
    first_seen: int = 0
    updated_at: int = 0


_COLUMNS = (
    "provider, kind, ref, payment_ref, amount, currency, active, status, event_id, first_seen,"
    " updated_at"
)


def get(conn: apsw.Connection, provider: str, kind: ReversalKind, ref: str) -> Reversal | None:
    return fetch_one(
        conn,
        Reversal,
        f"SELECT {_COLUMNS} FROM payment_reversals WHERE provider = ? AND kind = ? AND ref = ?",
        (provider, kind.value, ref),
    )


def put(conn: apsw.Connection, reversal: Reversal, *, now: int) -> None:
    """Store `reversal` as what is now known (billing decides what that is)."""
    conn.execute(
        f"INSERT INTO payment_reversals ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (provider, kind, ref) DO UPDATE SET amount = excluded.amount,"
        " active = excluded.active, status = excluded.status, event_id = excluded.event_id,"
        " updated_at = excluded.updated_at",
        (
            reversal.provider,
            reversal.kind.value,
            reversal.ref,
            reversal.payment_ref,
            reversal.amount,
            reversal.currency,
            int(reversal.active),
            reversal.status,
            reversal.event_id,
            now,
            now,
        ),
    )


def of_payment(conn: apsw.Connection, provider: str, payment_ref: str) -> list[Reversal]:
    """Every refund and dispute reported against a payment, in no particular order (what is
    made of them is a sum); on every purchase's path, so one index lookup and no sort."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM payment_reversals WHERE provider = ? AND payment_ref = ?",
        (provider, payment_ref),
    )
    return rows_as(Reversal, rows)


def open_disputes(conn: apsw.Connection, *, limit: int, offset: int) -> list[Reversal]:
    """Disputes still holding money (open or lost), oldest first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM payment_reversals WHERE kind = 'dispute' AND active = 1"
        " ORDER BY first_seen, ref LIMIT ? OFFSET ?",
        (limit, offset),
    )
    return rows_as(Reversal, rows)
