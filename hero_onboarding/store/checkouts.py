"""checkout_sessions: what we asked a provider to charge, and where each checkout stands."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import apsw

from .rows import fetch_one, fetch_single, integer, rows_as, text


class CheckoutStatus(StrEnum):
    OPEN = "open"  # created, waiting for the buyer
    PENDING = "pending"  # buyer finished, a delayed payment method is still settling
    COMPLETE = "complete"  # paid
    FAILED = "failed"  # the delayed payment failed
    EXPIRED = "expired"  # never paid, no longer payable


# Which statuses each new status may replace. Events arrive in any order: a late "expired" or
# "pending" must never undo "complete", and money received always wins.
_MAY_REPLACE: Final[dict[CheckoutStatus, tuple[CheckoutStatus, ...]]] = {
    CheckoutStatus.PENDING: (CheckoutStatus.OPEN,),
    CheckoutStatus.COMPLETE: (
        CheckoutStatus.OPEN,
        CheckoutStatus.PENDING,
        CheckoutStatus.FAILED,
        CheckoutStatus.EXPIRED,
    ),
    CheckoutStatus.FAILED: (CheckoutStatus.OPEN, CheckoutStatus.PENDING),
    CheckoutStatus.EXPIRED: (CheckoutStatus.OPEN,),
}


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    sid: str
    provider: str
    amount: int
    currency: str
    status: CheckoutStatus
    url: str | None
    created_at: int
    expires_at: int | None = None
    completed_at: int | None = None


_COLUMNS = "id, sid, provider, amount, currency, status, url, created_at, expires_at, completed_at"


def insert(conn: apsw.Connection, checkout: CheckoutSession) -> bool:
    """Insert `checkout` unless its id is known (a provider replayed an idempotent create)."""
    values = (
        checkout.id,
        checkout.sid,
        checkout.provider,
        checkout.amount,
        checkout.currency,
        checkout.status.value,
        checkout.url,
        checkout.created_at,
        checkout.expires_at,
        checkout.completed_at,
    )
    conn.execute(
        f"INSERT INTO checkout_sessions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO NOTHING",
        values,
    )
    return conn.changes() == 1


def get(conn: apsw.Connection, checkout_id: str) -> CheckoutSession | None:
    sql = f"SELECT {_COLUMNS} FROM checkout_sessions WHERE id = ?"
    return fetch_one(conn, CheckoutSession, sql, (checkout_id,))


def advance(
    conn: apsw.Connection, provider: str, checkout_id: str, status: CheckoutStatus, *, now: int
) -> bool:
    """Move a checkout to `status` if that is a step forward; True if the row changed."""
    allowed = _MAY_REPLACE[status]
    conn.execute(
        "UPDATE checkout_sessions SET status = ?,"
        " completed_at = CASE WHEN ? = 'complete' THEN ? ELSE completed_at END"
        f" WHERE id = ? AND provider = ? AND status IN ({', '.join('?' * len(allowed))})",
        (status.value, status.value, now, checkout_id, provider, *(s.value for s in allowed)),
    )
    return conn.changes() == 1


def page(
    conn: apsw.Connection, *, status: CheckoutStatus | None = None, limit: int, offset: int
) -> list[CheckoutSession]:
    """Newest first, optionally of one status."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM checkout_sessions WHERE (?1 IS NULL OR status = ?1)"
        " ORDER BY created_at DESC, id LIMIT ?2 OFFSET ?3",
        (status.value if status else None, limit, offset),
    )
    return rows_as(CheckoutSession, rows)


def count_by_status(conn: apsw.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT status, COUNT(*) FROM checkout_sessions GROUP BY status")
    return {text(status): integer(count) for status, count in rows}


def of_user(
    conn: apsw.Connection, sid: str, statuses: tuple[CheckoutStatus, ...], *, limit: int
) -> list[CheckoutSession]:
    """A user's checkouts in any of `statuses`, newest first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM checkout_sessions WHERE sid = ?"
        f" AND status IN ({', '.join('?' * len(statuses))}) ORDER BY created_at DESC, id LIMIT ?",
        (sid, *(s.value for s in statuses), limit),
    )
    return rows_as(CheckoutSession, rows)


def opened_since(conn: apsw.Connection, sid: str, since: int) -> tuple[int, int | None]:
    """How many checkouts `sid` opened at or after `since`, and when the oldest of them was."""
    found = fetch_single(
        conn,
        _Opened,
        "SELECT COUNT(*), MIN(created_at) FROM checkout_sessions WHERE sid = ? AND created_at >= ?",
        (sid, since),
    )
    return found.count, found.oldest


@dataclass(frozen=True, slots=True)
class _Opened:
    count: int
    oldest: int | None
