"""users and their billing row: one Mycelium address, one sid, forever."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import apsw

from .rows import fetch_one, one_int, rows_as


@dataclass(frozen=True, slots=True)
class User:
    sid: str
    mycelium_address: str
    created_at: int


_COLUMNS = "sid, mycelium_address, created_at"


def register(conn: apsw.Connection, address: str, *, currency: str, now: int) -> User:
    """Return the user owning `address`, creating it with a zero balance the first time."""
    with conn:
        existing = get_by_address(conn, address)
        user = existing or User(secrets.token_hex(8), mycelium_address=address, created_at=now)
        if existing is None:
            conn.execute(
                f"INSERT INTO users ({_COLUMNS}) VALUES (?, ?, ?)",
                (user.sid, user.mycelium_address, user.created_at),
            )
            conn.execute(
                "INSERT INTO billing (sid, credit_balance, currency, updated_at)"
                " VALUES (?, 0, ?, ?)",
                (user.sid, currency, now),
            )
    return user


def get(conn: apsw.Connection, sid: str) -> User | None:
    return fetch_one(conn, User, f"SELECT {_COLUMNS} FROM users WHERE sid = ?", (sid,))


def get_by_address(conn: apsw.Connection, address: str) -> User | None:
    sql = f"SELECT {_COLUMNS} FROM users WHERE mycelium_address = ?"
    return fetch_one(conn, User, sql, (address,))


def page(conn: apsw.Connection, *, limit: int, offset: int) -> list[User]:
    """Users in the order they joined."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM users ORDER BY created_at, sid LIMIT ? OFFSET ?", (limit, offset)
    )
    return rows_as(User, rows)


def count(conn: apsw.Connection) -> int:
    return one_int(conn, "SELECT COUNT(*) FROM users")
