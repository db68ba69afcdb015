"""admin_audit: every change an operator made through the admin daemon, who, when, why."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import apsw


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
    return conn.execute(
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
    ).get


def find_by_key(conn: apsw.Connection, idempotency_key: str) -> AuditEntry | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM admin_audit WHERE idempotency_key = ?", (idempotency_key,)
    ).fetchone()
    if row is None:
        return None
    return AuditEntry(
        row[0], row[1], row[2], row[3], json.loads(row[4]), json.loads(row[5]), row[6]
    )


def count(conn: apsw.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM admin_audit").get
