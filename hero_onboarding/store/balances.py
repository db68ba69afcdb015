"""The billing table: each user's balance, in minor units. Moved only by the ledger."""

from __future__ import annotations

from dataclasses import dataclass

import apsw


@dataclass(frozen=True, slots=True)
class Balance:
    sid: str
    credit_balance: int
    currency: str
    updated_at: int


def get(conn: apsw.Connection, sid: str) -> Balance | None:
    row = conn.execute(
        "SELECT sid, credit_balance, currency, updated_at FROM billing WHERE sid = ?", (sid,)
    ).fetchone()
    return Balance(*row) if row else None
