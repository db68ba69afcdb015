"""The billing table: each user's balance, in minor units. Moved only by the ledger."""

from __future__ import annotations

from dataclasses import dataclass

import apsw

from .rows import fetch_one


@dataclass(frozen=True, slots=True)
class Balance:
    sid: str
    credit_balance: int
    currency: str
    updated_at: int


def get(conn: apsw.Connection, sid: str) -> Balance | None:
    sql = "SELECT sid, credit_balance, currency, updated_at FROM billing WHERE sid = ?"
    return fetch_one(conn, Balance, sql, (sid,))
