"""admin_audit: every change an operator made through the admin daemon, who, when, why."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import apsw

from .rows import fetch_one, one_int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: int
    actor: str
    method: str
    params: dict[str, Any]
    result: dict[str, Any]
    idempotency_key: str | None


_COLUMNS = "id, at, actor, method, params, result, idempotency_key"


def record(
    conn: apsw.Connection,
    *,
    at: int,
    actor: str,
    method: str,
    params: dict[str, Any],
    result: dict[str, Any],
    idempotency_key: str | None = None,
) -> int:
    return one_int(
        conn,
        "INSERT INTO admin_audit (at, actor, method, params, result, idempotency_key)"
        " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (
            at,
            actor,
            method,
            json.dumps(params, sort_keys=True),
            json.dumps(result),
            idempotency_key,
        ),
    )


def find_by_key(conn: apsw.Connection, idempotency_key: str) -> AuditEntry | None:
    sql = f"SELECT {_COLUMNS} FROM admin_audit WHERE idempotency_key = ?"
    return fetch_one(conn, AuditEntry, sql, (idempotency_key,))


def count(conn: apsw.Connection) -> int:
    return one_int(conn, "SELECT COUNT(*) FROM admin_audit")
