"""login_challenges: one row per login attempt on an address (a code sent, a nonce offered).

A challenge dies when it is used, when it expires, or after MAX_WRONG_TRIES wrong answers.
`consume` is the one guarded UPDATE that turns a live challenge into a login, so two requests
racing with the right answer cannot both log in. A challenge whose code could not be sent (or
was over the address's limit) keeps a NULL code_hash: only the key proof can answer it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import apsw

from .rows import fetch_one, fetch_single

MAX_WRONG_TRIES: Final = 5


@dataclass(frozen=True, slots=True)
class Challenge:
    id: str
    mycelium_address: str
    code_hash: str | None
    nonce: str
    client_ip: str
    attempts: int
    created_at: int
    expires_at: int
    used_at: int | None = None

    def tries_left(self) -> int:
        return max(0, MAX_WRONG_TRIES - self.attempts)

    def is_live(self, now: int) -> bool:
        """The same rule `consume` enforces in SQL."""
        return self.used_at is None and now < self.expires_at and self.tries_left() > 0


@dataclass(frozen=True, slots=True)
class RecentCounts:
    """Challenges since a time: codes sent to one address, and all from one client bucket."""

    codes_to_address: int
    from_client: int
    oldest_code_to_address: int | None
    oldest_from_client: int | None


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
    sql = f"SELECT {_COLUMNS} FROM login_challenges WHERE id = ?"
    return fetch_one(conn, Challenge, sql, (challenge_id,))


def recent_counts(conn: apsw.Connection, *, since: int, address: str, client: str) -> RecentCounts:
    return fetch_single(
        conn,
        RecentCounts,
        "SELECT"
        " COUNT(CASE WHEN mycelium_address = ?1 AND code_hash IS NOT NULL THEN 1 END),"
        " COUNT(CASE WHEN client_ip = ?2 THEN 1 END),"
        " MIN(CASE WHEN mycelium_address = ?1 AND code_hash IS NOT NULL THEN created_at END),"
        " MIN(CASE WHEN client_ip = ?2 THEN created_at END)"
        " FROM login_challenges"
        " WHERE created_at > ?3 AND (mycelium_address = ?1 OR client_ip = ?2)",
        (address, client, since),
    )


def drop_code(conn: apsw.Connection, challenge_id: str) -> None:
    """The code never left: it can answer nothing, and it does not count as sent."""
    conn.execute("UPDATE login_challenges SET code_hash = NULL WHERE id = ?", (challenge_id,))


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
