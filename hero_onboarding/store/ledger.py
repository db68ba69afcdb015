"""The ledger: append-only payment_events, and the one operation that moves a balance.

A balance changes only together with the event that explains it, in one statement (a trigger
in the schema), and an event is recorded at most once per (provider, kind, external_ref). So a
payment reported any number of times, by any mix of webhook, return page and reconciliation,
moves the balance once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import apsw

from ..errors import HeroOnboardingError
from .rows import integer, one_int, row_as, rows_as


class EntryKind(StrEnum):
    PURCHASE = "purchase"
    REFUND = "refund"  # money refunded (negative)
    REFUND_REVERSAL = "refund_reversal"  # a refund taken back failed: credits given back
    DISPUTE = "dispute"  # money held by a dispute (negative)
    DISPUTE_REVERSAL = "dispute_reversal"  # a dispute won: credits given back
    ADJUSTMENT = "adjustment"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One movement of a balance. `amount` is signed minor units."""

    sid: str
    provider: str
    kind: EntryKind
    external_ref: str
    amount: int
    currency: str
    event_id: str | None = None
    checkout_id: str | None = None


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A sid whose balance is not the sum of its events (balance None: no billing row)."""

    sid: str
    balance: int | None
    ledger_sum: int


class LedgerError(HeroOnboardingError, RuntimeError):
    """An entry that cannot be applied (no balance in that currency for the sid)."""


def append(conn: apsw.Connection, entry: LedgerEntry, *, now: int) -> bool:
    """Record `entry` and move the balance by its amount; False if it was recorded before.

    One INSERT: the schema's trigger moves the balance inside the same statement, so the event
    and the balance change are atomic without a transaction of our own, and the balance moves
    in SQL, never read-modified-written here.
    """
    try:
        inserted = conn.execute(
            "INSERT INTO payment_events (sid, provider, kind, external_ref, amount, currency,"
            " event_id, checkout_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING RETURNING id",
            (
                entry.sid,
                entry.provider,
                entry.kind.value,
                entry.external_ref,
                entry.amount,
                entry.currency,
                entry.event_id,
                entry.checkout_id,
                now,
            ),
        ).fetchall()
    except apsw.ConstraintError as exc:
        if "no balance in that currency" in str(exc):
            raise LedgerError(f"sid {entry.sid} has no balance in {entry.currency}") from None
        raise
    return bool(inserted)


def find(
    conn: apsw.Connection, provider: str, kind: EntryKind, external_ref: str
) -> LedgerEntry | None:
    row = conn.execute(
        "SELECT sid, provider, kind, external_ref, amount, currency, event_id, checkout_id"
        " FROM payment_events WHERE provider = ? AND kind = ? AND external_ref = ?",
        (provider, kind.value, external_ref),
    ).fetchone()
    if row is None:
        return None
    return LedgerEntry(row[0], row[1], EntryKind(row[2]), *row[3:])


@dataclass(frozen=True, slots=True)
class RecordedEntry:
    """A ledger row as stored: the entry, its row id and when it was recorded."""

    id: int
    entry: LedgerEntry
    created_at: int


def page(
    conn: apsw.Connection,
    *,
    sid: str | None = None,
    kind: EntryKind | None = None,
    since: int | None = None,
    limit: int,
    offset: int,
) -> list[RecordedEntry]:
    """Newest first, filtered by any of sid, kind and a start time."""
    filters = {"sid = ?": sid, "kind = ?": kind.value if kind else None, "created_at >= ?": since}
    used = {clause: value for clause, value in filters.items() if value is not None}
    where = f"WHERE {' AND '.join(used)}" if used else ""  # only what is asked: indexes apply
    rows = conn.execute(
        "SELECT id, sid, provider, kind, external_ref, amount, currency, event_id, checkout_id,"
        f" created_at FROM payment_events {where} ORDER BY id DESC LIMIT ? OFFSET ?",
        (*used.values(), limit, offset),
    ).fetchall()
    return [
        RecordedEntry(integer(row[0]), row_as(LedgerEntry, row[1:9]), integer(row[9]))
        for row in rows
    ]


def count(conn: apsw.Connection) -> int:
    return one_int(conn, "SELECT COUNT(*) FROM payment_events")


def reversal_ref(payment_ref: str, kind: EntryKind, cause: str) -> str:
    """The external_ref of a refund or dispute entry (or its reversal) on a payment.

    `cause` names what moved it (a refund or dispute id, a running total, the purchase); the
    payment's id comes first, so every entry of one payment sorts together (`moved_so_far`).
    """
    return f"{payment_ref}:{kind.value}:{cause}"


def moved_so_far(
    conn: apsw.Connection, provider: str, payment_ref: str, kinds: tuple[EntryKind, ...]
) -> int:
    """Sum of the entries of `kinds` recorded against a payment (signed)."""
    # Every such entry's external_ref sorts in [ "<ref>:", "<ref>;" ), since ';' follows ':'
    # (a payment id holds no ':'); a range keeps the lookup on the UNIQUE index.
    low, high = f"{payment_ref}:", f"{payment_ref};"
    return one_int(
        conn,
        "SELECT COALESCE(SUM(amount), 0) FROM payment_events WHERE provider = ?"
        f" AND kind IN ({', '.join('?' * len(kinds))}) AND external_ref >= ? AND external_ref < ?",
        (provider, *(kind.value for kind in kinds), low, high),
    )


def verify_ledger(conn: apsw.Connection) -> list[Mismatch]:
    """Every sid whose billing.credit_balance differs from SUM(payment_events.amount)."""
    rows = conn.execute(
        """
        SELECT b.sid, b.credit_balance, COALESCE(e.total, 0)
          FROM billing b
          LEFT JOIN (SELECT sid, SUM(amount) AS total FROM payment_events GROUP BY sid) e
                 ON e.sid = b.sid
         WHERE b.credit_balance <> COALESCE(e.total, 0)
        UNION ALL
        SELECT e.sid, NULL, SUM(e.amount)
          FROM payment_events e
         WHERE NOT EXISTS (SELECT 1 FROM billing b WHERE b.sid = e.sid)
         GROUP BY e.sid
        """
    ).fetchall()
    return rows_as(Mismatch, rows)
