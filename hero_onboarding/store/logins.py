"""login_challenges: one row per code sent (and nonce offered) to a Mycelium address.

A challenge dies when it is used, when it expires, or after MAX_WRONG_TRIES wrong answers;
`consume` is the one guarded UPDATE that turns a live challenge into a login, so two requests
racing with the right code cannot both log in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import apsw

MAX_WRONG_TRIES: Final = 5


@dataclass(frozen=True, slots=True)
class Challenge:
    id: str
    mycelium_address: str
    code_hash: str
    nonce: str
    client_ip: str
    attempts: int
    created_at: int
    expires_at: int
    used_at: int | None = None

    def tries_left(self) -> int:
        return max(0, MAX_WRONG_TRIES - self.attempts)


_COLUMNS = (
    "id, mycelium_address, code_hash, nonce, client_ip, attempts, created_at, expires_at, used_at"
)


def insert(conn: apsw.Connection, challenge: Challenge) -> None:
    conn.execute(
        f"INSERT INTO login_challenges ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            challenge.id,
            challenge.mycelium_address,
            challenge.code_hash,
            challenge.nonce,
            challenge.client_ip,
            challenge.attempts,
            challenge.created_at,
            challenge.expires_at,
            challenge.used_at,
        ),
    )


def get(conn: apsw.Connection, challenge_id: str) -> Challenge | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM login_challenges WHERE id = ?", (challenge_id,)
    ).fetchone()
    return Challenge(*row) if row else None


def count_since(conn: apsw.Connection, *, since: int, address: str | None = None,
                client_ip: str | None = None) -> int:  # fmt: skip
    """Challenges created since `since` for an address, or from a client IP (rate limits)."""
    if address is not None:
        query, key = "mycelium_address = ?", address
    elif client_ip is not None:
        query, key = "client_ip = ?", client_ip
    else:
        raise ValueError("count by address or by client_ip")
    return conn.execute(
        f"SELECT COUNT(*) FROM login_challenges WHERE {query} AND created_at >= ?", (key, since)
    ).get


def add_wrong_try(conn: apsw.Connection, challenge_id: str) -> None:
    conn.execute(
        "UPDATE login_challenges SET attempts = attempts + 1 WHERE id = ? AND used_at IS NULL",
        (challenge_id,),
    )


def consume(conn: apsw.Connection, challenge_id: str, *, now: int) -> bool:
    """Mark a live challenge used; False if it was used, expired or dead meanwhile."""
    conn.execute(
        "UPDATE login_challenges SET used_at = ? WHERE id = ? AND used_at IS NULL"
        " AND expires_at > ? AND attempts < ?",
        (now, challenge_id, now, MAX_WRONG_TRIES),
    )
    return conn.changes() == 1


def prune(conn: apsw.Connection, *, expired_before: int, limit: int = 5000) -> int:
    """Drop up to `limit` challenges that expired before `expired_before`; return how many."""
    conn.execute(
        "DELETE FROM login_challenges WHERE id IN (SELECT id FROM login_challenges"
        " WHERE expires_at < ? ORDER BY expires_at LIMIT ?)",
        (expired_before, limit),
    )
    return conn.changes()
