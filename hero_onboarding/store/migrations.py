"""Numbered schema migrations, tracked by `PRAGMA user_version`.

Migration N (1-based) is `MIGRATIONS[N - 1]`. Never edit a migration that has shipped: append a
new one. Both daemons migrate at boot; `BEGIN IMMEDIATE` makes the second one wait and then find
nothing left to do.
"""

from __future__ import annotations

from typing import Final

import apsw

from .db import StoreError
from .rows import one_int

_V1: Final = """
CREATE TABLE users (
    sid              TEXT PRIMARY KEY,
    mycelium_address TEXT NOT NULL UNIQUE,
    created_at       INTEGER NOT NULL
);

CREATE TABLE billing (
    sid            TEXT PRIMARY KEY REFERENCES users(sid),
    -- An integer overflow would turn the sum into a REAL: refuse that write instead.
    credit_balance INTEGER NOT NULL DEFAULT 0 CHECK (typeof(credit_balance) = 'integer'),
    currency       TEXT NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- The ledger. Append-only: the balance is the sum of these rows, and each payment can be
-- recorded once per kind (UNIQUE(provider, kind, external_ref)).
CREATE TABLE payment_events (
    id           INTEGER PRIMARY KEY,
    sid          TEXT NOT NULL REFERENCES users(sid),
    provider     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    external_ref TEXT NOT NULL,
    amount       INTEGER NOT NULL,
    currency     TEXT NOT NULL,
    event_id     TEXT,
    checkout_id  TEXT,
    created_at   INTEGER NOT NULL,
    UNIQUE (provider, kind, external_ref),
    CHECK (typeof(amount) = 'integer' AND amount BETWEEN -1000000000000 AND 1000000000000),
    CHECK ((kind = 'purchase' AND amount > 0)
        OR (kind = 'refund' AND amount < 0)
        OR (kind = 'adjustment' AND amount <> 0))
);
-- One purchase per checkout as well as per payment: a session is never paid for twice.
CREATE UNIQUE INDEX payment_events_one_purchase_per_checkout
    ON payment_events (provider, checkout_id) WHERE kind = 'purchase' AND checkout_id IS NOT NULL;
CREATE INDEX payment_events_by_sid ON payment_events (sid, created_at);
-- Appending an event moves its balance in the same statement, so no writer (this daemon, the
-- admin daemon, an operator with sqlite3) can record one without the other.
CREATE TRIGGER payment_events_move_balance AFTER INSERT ON payment_events BEGIN
    SELECT RAISE(ABORT, 'no balance in that currency for this sid')
     WHERE NOT EXISTS (SELECT 1 FROM billing WHERE sid = NEW.sid AND currency = NEW.currency);
    UPDATE billing SET credit_balance = credit_balance + NEW.amount, updated_at = NEW.created_at
     WHERE sid = NEW.sid;
END;
CREATE TRIGGER payment_events_no_update BEFORE UPDATE ON payment_events
    BEGIN SELECT RAISE(ABORT, 'payment_events is append-only'); END;
CREATE TRIGGER payment_events_no_delete BEFORE DELETE ON payment_events
    BEGIN SELECT RAISE(ABORT, 'payment_events is append-only'); END;

CREATE TABLE checkout_sessions (
    id           TEXT PRIMARY KEY,
    sid          TEXT NOT NULL REFERENCES users(sid),
    provider     TEXT NOT NULL,
    amount       INTEGER NOT NULL CHECK (amount > 0),
    currency     TEXT NOT NULL,
    status       TEXT NOT NULL
                 CHECK (status IN ('open', 'pending', 'complete', 'failed', 'expired')),
    url          TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    completed_at INTEGER
);
CREATE INDEX checkout_sessions_by_sid ON checkout_sessions (sid, created_at);
CREATE INDEX checkout_sessions_by_status ON checkout_sessions (status, created_at);

CREATE TABLE webhook_deliveries (
    id          INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,
    provider    TEXT NOT NULL,
    event_id    TEXT,
    type        TEXT,
    verified    INTEGER NOT NULL CHECK (verified IN (0, 1)),
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (received_at);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id);

-- Login and sessions (issue: Mycelium login). Codes and tokens are stored hashed.
CREATE TABLE login_challenges (
    id               TEXT PRIMARY KEY,
    mycelium_address TEXT NOT NULL,
    code_hash        BLOB,
    nonce            TEXT,
    client_ip        TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    used_at          INTEGER
);
CREATE INDEX login_challenges_by_address ON login_challenges (mycelium_address, created_at);

CREATE TABLE web_sessions (
    token_hash BLOB PRIMARY KEY,
    sid        TEXT NOT NULL REFERENCES users(sid),
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX web_sessions_by_sid ON web_sessions (sid);

CREATE TABLE admin_audit (
    id     INTEGER PRIMARY KEY,
    at     INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    method TEXT NOT NULL,
    params TEXT NOT NULL,
    result TEXT
);
"""


def _drop_if_empty(table: str) -> str:
    """SQL dropping a provisional table, which aborts the migration if it ever held a row."""
    return f"""
CREATE TEMP TABLE _must_be_empty (rows INTEGER CHECK (rows = 0));
INSERT INTO _must_be_empty SELECT COUNT(*) FROM {table};
DROP TABLE _must_be_empty;
DROP TABLE {table};
"""


# Login (issue 4): migration 1's provisional login tables were never written to; these are
# their final shape. Codes and session tokens are stored only as hashes.
_V2: Final = (
    """
"""
    + _drop_if_empty("login_challenges")
    + """
CREATE TABLE login_challenges (
    id               TEXT PRIMARY KEY,             -- random; the verify form carries it
    mycelium_address TEXT NOT NULL,
    code_hash        TEXT,                         -- sha256 of "<id>:<code>"; NULL: no code sent
    nonce            TEXT NOT NULL UNIQUE,         -- for the key proof, single use with the row
    client_ip        TEXT NOT NULL,                -- the client's rate-limit bucket (IPv6: /64)
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL CHECK (expires_at > created_at),
    used_at          INTEGER
);
CREATE INDEX login_challenges_by_address ON login_challenges (mycelium_address, created_at);
CREATE INDEX login_challenges_by_ip ON login_challenges (client_ip, created_at);
CREATE INDEX login_challenges_by_expiry ON login_challenges (expires_at);

"""
    + _drop_if_empty("web_sessions")
    + """
CREATE TABLE web_sessions (
    token_hash TEXT PRIMARY KEY,                   -- sha256 of the cookie's token
    sid        TEXT NOT NULL REFERENCES users(sid),
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL CHECK (expires_at > created_at)
);
CREATE INDEX web_sessions_by_sid ON web_sessions (sid);
CREATE INDEX web_sessions_by_expiry ON web_sessions (expires_at);
"""
)

# Admin daemon (issue 6): migration 1's provisional admin_audit was never written to. Every
# admin write is audited; an idempotency key names at most one of them.
_V3: Final = (
    """
"""
    + _drop_if_empty("admin_audit")
    + """
CREATE TABLE admin_audit (
    id              INTEGER PRIMARY KEY,
    at              INTEGER NOT NULL,
    actor           TEXT NOT NULL,                 -- who called: the socket peer's uid and name
    method          TEXT NOT NULL,
    params          TEXT NOT NULL,                 -- JSON
    result          TEXT NOT NULL,                 -- JSON
    idempotency_key TEXT UNIQUE
);
CREATE INDEX admin_audit_by_time ON admin_audit (at);
-- user_list pages users in the order they joined.
CREATE INDEX users_by_joining ON users (created_at, sid);
"""
)

# Refunds, refund failures and disputes (issue 13). The ledger learns four kinds of its own
# (its CHECK is rebuilt: SQLite cannot alter one, so the table is copied, triggers last, so
# the copy moves no balance). payment_reversals keeps every refund and dispute reported, so one
# that arrives before its purchase is applied when the purchase is credited, and each one is
# taken into account once. Refunds recorded before this migration, as running totals, become
# one refund_total row per payment, so nothing already taken is taken or given back again.
_V4: Final = """
CREATE TABLE payment_events_v4 (
    id           INTEGER PRIMARY KEY,
    sid          TEXT NOT NULL REFERENCES users(sid),
    provider     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    external_ref TEXT NOT NULL,
    amount       INTEGER NOT NULL,
    currency     TEXT NOT NULL,
    event_id     TEXT,
    checkout_id  TEXT,
    created_at   INTEGER NOT NULL,
    UNIQUE (provider, kind, external_ref),
    CHECK (typeof(amount) = 'integer' AND amount BETWEEN -1000000000000 AND 1000000000000),
    CHECK ((kind = 'purchase' AND amount > 0)
        OR (kind IN ('refund', 'dispute') AND amount < 0)
        OR (kind IN ('refund_reversal', 'dispute_reversal') AND amount > 0)
        OR (kind = 'adjustment' AND amount <> 0))
);
INSERT INTO payment_events_v4 SELECT id, sid, provider, kind, external_ref, amount, currency,
    event_id, checkout_id, created_at FROM payment_events;
DROP TABLE payment_events;
ALTER TABLE payment_events_v4 RENAME TO payment_events;
CREATE UNIQUE INDEX payment_events_one_purchase_per_checkout
    ON payment_events (provider, checkout_id) WHERE kind = 'purchase' AND checkout_id IS NOT NULL;
CREATE INDEX payment_events_by_sid ON payment_events (sid, created_at);
CREATE TRIGGER payment_events_move_balance AFTER INSERT ON payment_events BEGIN
    SELECT RAISE(ABORT, 'no balance in that currency for this sid')
     WHERE NOT EXISTS (SELECT 1 FROM billing WHERE sid = NEW.sid AND currency = NEW.currency);
    UPDATE billing SET credit_balance = credit_balance + NEW.amount, updated_at = NEW.created_at
     WHERE sid = NEW.sid;
END;
CREATE TRIGGER payment_events_no_update BEFORE UPDATE ON payment_events
    BEGIN SELECT RAISE(ABORT, 'payment_events is append-only'); END;
CREATE TRIGGER payment_events_no_delete BEFORE DELETE ON payment_events
    BEGIN SELECT RAISE(ABORT, 'payment_events is append-only'); END;

CREATE TABLE payment_reversals (
    provider    TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('refund', 'refund_total', 'dispute')),
    ref         TEXT NOT NULL,                 -- the refund or dispute; refund_total: payment_ref
    payment_ref TEXT NOT NULL,                 -- the payment (purchase external_ref) it reverses
    amount      INTEGER NOT NULL
                CHECK (typeof(amount) = 'integer' AND amount BETWEEN 0 AND 1000000000000),
    currency    TEXT NOT NULL,
    active      INTEGER NOT NULL CHECK (active IN (0, 1)),  -- 1: it takes the money back
    status      TEXT NOT NULL,                 -- the provider's own word for its state
    event_id    TEXT NOT NULL,                 -- the report that last changed it
    first_seen  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (provider, kind, ref)
);
CREATE INDEX payment_reversals_by_payment ON payment_reversals (provider, payment_ref);
CREATE INDEX payment_reversals_open_disputes ON payment_reversals (first_seen)
    WHERE kind = 'dispute' AND active = 1;
INSERT INTO payment_reversals (provider, kind, ref, payment_ref, amount, currency, active, status,
                               event_id, first_seen, updated_at)
SELECT provider, 'refund_total', payment, payment, -SUM(amount), MIN(currency), 1, 'succeeded',
       'migration 4', MIN(created_at), MAX(created_at)
  FROM (SELECT *, substr(external_ref, 1, instr(external_ref, ':refund:') - 1) AS payment
          FROM payment_events WHERE kind = 'refund')
 GROUP BY provider, payment;
"""

# Self-healing (issue 13): every reconciliation run, scheduled or asked for, and the lease that
# keeps them one at a time across processes: a run is taken in one BEGIN IMMEDIATE transaction
# that refuses while an unfinished run's lease_until is in the future; a crashed run's lease
# simply runs out. Rows are a few hundred bytes, one per interval: kept, like the audit.
_RECONCILE_RUNS: Final = """
CREATE TABLE reconcile_runs (
    id          INTEGER PRIMARY KEY,
    "trigger"   TEXT NOT NULL CHECK ("trigger" IN ('schedule', 'rpc')),
    actor       TEXT NOT NULL,                 -- the daemon (pid) or the operator (uid, pid)
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    lease_until INTEGER NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('running', 'ok', 'failed')),
    since       INTEGER NOT NULL,              -- the window asked about: created at or after
    counts      TEXT,                          -- JSON: checked, credited, refunded, ...
    error       TEXT,
    CHECK ((outcome = 'running') = (finished_at IS NULL))
);
CREATE INDEX reconcile_runs_unfinished ON reconcile_runs (lease_until) WHERE outcome = 'running';
CREATE INDEX reconcile_runs_by_outcome ON reconcile_runs (outcome);  -- and id, implicitly
"""

MIGRATIONS: Final[tuple[str, ...]] = (_V1, _V2, _V3, _V4, _RECONCILE_RUNS)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def migrate(conn: apsw.Connection) -> int:
    """Bring the schema up to SCHEMA_VERSION in one transaction; return the version found."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(conn)
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {found} is newer than this program's "
                f"({SCHEMA_VERSION}); upgrade hero-onboarding"
            )
        for script in MIGRATIONS[found:]:
            for _ in conn.execute(script):
                pass
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return found


def schema_version(conn: apsw.Connection) -> int:
    return one_int(conn, "PRAGMA user_version")
