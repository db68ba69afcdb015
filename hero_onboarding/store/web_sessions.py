"""web_sessions: who a browser's session cookie belongs to, until when.

Only a hash of the cookie's token is stored, so a copy of the database logs nobody in.
"""

from __future__ import annotations

from dataclasses import dataclass

import apsw

from .rows import fetch_one


@dataclass(frozen=True, slots=True)
class WebSession:
    sid: str
    mycelium_address: str
    csrf_token: str
    expires_at: int


def insert(
    conn: apsw.Connection, *, token_hash: str, sid: str, csrf_token: str, now: int, expires_at: int
) -> None:
    conn.execute(
        "INSERT INTO web_sessions (token_hash, sid, csrf_token, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (token_hash, sid, csrf_token, now, expires_at),
    )


def get_live(conn: apsw.Connection, token_hash: str, *, now: int) -> WebSession | None:
    return fetch_one(
        conn,
        WebSession,
        "SELECT s.sid, u.mycelium_address, s.csrf_token, s.expires_at FROM web_sessions s"
        " JOIN users u USING (sid) WHERE s.token_hash = ? AND s.expires_at > ?",
        (token_hash, now),
    )


def delete(conn: apsw.Connection, token_hash: str) -> None:
    conn.execute("DELETE FROM web_sessions WHERE token_hash = ?", (token_hash,))


def prune(conn: apsw.Connection, *, expired_before: int, limit: int = 5000) -> int:
    conn.execute(
        "DELETE FROM web_sessions WHERE token_hash IN (SELECT token_hash FROM web_sessions"
        " WHERE expires_at < ? ORDER BY expires_at LIMIT ?)",
        (expired_before, limit),
    )
    return conn.changes()
