"""webhook_deliveries: every webhook request we answered, accepted or not, for operators."""

from __future__ import annotations

from dataclasses import dataclass

import apsw

from .rows import one_int, rows_as


@dataclass(frozen=True, slots=True)
class Delivery:
    received_at: int
    provider: str
    verified: bool
    outcome: str
    detail: str = ""
    event_id: str | None = None
    type: str | None = None


def record(conn: apsw.Connection, delivery: Delivery) -> None:
    conn.execute(
        "INSERT INTO webhook_deliveries (received_at, provider, event_id, type, verified,"
        " outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            delivery.received_at,
            delivery.provider,
            delivery.event_id,
            delivery.type,
            int(delivery.verified),
            delivery.outcome,
            delivery.detail,
        ),
    )


def page(
    conn: apsw.Connection,
    *,
    outcome: str | None = None,
    since: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Delivery]:
    """Newest first, filtered by outcome and a start time."""
    rows = conn.execute(
        "SELECT received_at, provider, verified, outcome, detail, event_id, type"
        " FROM webhook_deliveries WHERE (?1 IS NULL OR outcome = ?1)"
        " AND (?2 IS NULL OR received_at >= ?2) ORDER BY id DESC LIMIT ?3 OFFSET ?4",
        (outcome, since, limit, offset),
    ).fetchall()
    return rows_as(Delivery, rows)


def count(conn: apsw.Connection) -> int:
    return one_int(conn, "SELECT COUNT(*) FROM webhook_deliveries")


def prune(conn: apsw.Connection, *, received_before: int, limit: int = 5000) -> int:
    """Drop up to `limit` records older than the retention period; return how many went.

    Bounded so one call never holds the write lock for long: call again while it returns limit.
    """
    conn.execute(
        "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries"
        " WHERE received_at < ? ORDER BY received_at LIMIT ?)",
        (received_before, limit),
    )
    return conn.changes()
