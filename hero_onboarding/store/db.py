"""Opening the database file with the guarantees the ledger relies on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import apsw

from ..errors import UnavailableError


class StoreError(UnavailableError, RuntimeError, http_status=503, rpc_code=-32015):
    """The database cannot be used as asked (cannot open, schema too new, closed, not answering)."""


# What SQLite raises when the disk under the database fails us rather than our own SQL: full,
# an I/O error, a file we may no longer write (read-only mount, chattr +i) or reopen. Seen on a
# write, they make the daemon unready until a write succeeds again.
DISK_ERRORS: Final = (apsw.FullError, apsw.IOError, apsw.ReadOnlyError, apsw.CantOpenError)


def connect(path: Path, *, busy_timeout_ms: int) -> apsw.Connection:
    """Open (creating if needed) the database with WAL, synchronous=FULL and foreign keys.

    synchronous=FULL because a webhook we acknowledged must survive power loss: in WAL mode
    NORMAL may lose the last commits. busy_timeout because the admin daemon writes the same file.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StoreError(f"cannot create data directory {path.parent}: {exc.strerror}") from exc
    new = not path.exists()
    try:
        conn = apsw.Connection(str(path))
        conn.set_busy_timeout(busy_timeout_ms)
        mode = conn.execute("PRAGMA journal_mode=WAL").get
    except apsw.Error as exc:
        raise StoreError(f"cannot open database {path}: {exc}") from exc
    if mode != "wal":
        conn.close()
        raise StoreError(f"cannot put database {path} in WAL mode (got {mode!r})")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    if new:
        os.chmod(path, 0o600)  # balances and addresses are nobody else's business
    return conn
