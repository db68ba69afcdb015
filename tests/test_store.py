"""The database layer: pragmas, migrations, the ledger's guarantees, group commit."""

from __future__ import annotations

import asyncio
import stat
from functools import partial

import apsw
import pytest

from hero_onboarding.store import Store, StoreError, balances, ledger
from hero_onboarding.store.db import connect
from hero_onboarding.store.ledger import EntryKind, LedgerEntry, LedgerError
from hero_onboarding.store.migrations import MIGRATIONS, SCHEMA_VERSION, migrate
from tests.conftest import balance_of, register

NOW = 1_800_000_000


def purchase(sid: str, ref: str, amount: int = 1000, currency: str = "usd") -> LedgerEntry:
    return LedgerEntry(sid, "stripe", EntryKind.PURCHASE, ref, amount, currency, "evt_1", None)


@pytest.mark.parametrize("side", ["read", "write"])
async def test_connections_use_wal_full_sync_foreign_keys_and_busy_timeout(store, side):
    def pragmas(conn: apsw.Connection) -> tuple[str, int, int, int]:
        return (
            conn.execute("PRAGMA journal_mode").get,
            conn.execute("PRAGMA synchronous").get,
            conn.execute("PRAGMA foreign_keys").get,
            conn.execute("PRAGMA busy_timeout").get,
        )

    run = store.read if side == "read" else store.write
    assert await run(pragmas) == ("wal", 2, 1, 5000)  # synchronous 2 == FULL


async def test_database_file_is_private(store, settings):
    assert stat.S_IMODE(settings.db_path.stat().st_mode) == 0o600


async def test_migrations_set_user_version_and_are_idempotent(settings):
    conn = connect(settings.db_path, busy_timeout_ms=1000)
    try:
        assert migrate(conn) == 0
        assert conn.execute("PRAGMA user_version").get == SCHEMA_VERSION
        assert migrate(conn) == SCHEMA_VERSION  # nothing left to do, nothing fails
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {
            "users",
            "billing",
            "payment_events",
            "checkout_sessions",
            "webhook_deliveries",
            "login_challenges",
            "web_sessions",
            "admin_audit",
        } <= tables
    finally:
        conn.close()


async def test_a_newer_schema_refuses_to_open(settings):
    conn = connect(settings.db_path, busy_timeout_ms=1000)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this program"):
        await Store.open(settings.db_path)


async def test_append_moves_the_balance_once_per_payment(store, user):
    entry = purchase(user.sid, "pi_once", 1000)
    assert await store.write(partial(ledger.append, entry=entry, now=NOW)) is True
    assert await store.write(partial(ledger.append, entry=entry, now=NOW)) is False
    assert await balance_of(store, user.sid) == 1000


async def test_one_purchase_per_checkout_even_under_another_payment_ref(store, user):
    first = LedgerEntry(user.sid, "stripe", EntryKind.PURCHASE, "pi_a", 500, "usd", None, "cs_1")
    second = LedgerEntry(user.sid, "stripe", EntryKind.PURCHASE, "pi_b", 500, "usd", None, "cs_1")
    assert await store.write(partial(ledger.append, entry=first, now=NOW))
    assert not await store.write(partial(ledger.append, entry=second, now=NOW))
    assert await balance_of(store, user.sid) == 500


async def test_entry_in_a_currency_without_balance_changes_nothing(store, user):
    with pytest.raises(LedgerError, match="no balance in eur"):
        await store.write(
            partial(ledger.append, entry=purchase(user.sid, "pi_eur", 100, "eur"), now=NOW)
        )
    count = await store.read(lambda c: c.execute("SELECT COUNT(*) FROM payment_events").get)
    assert count == 0


async def test_ledger_rows_are_append_only(store, user):
    await store.write(partial(ledger.append, entry=purchase(user.sid, "pi_x"), now=NOW))
    for statement in ("UPDATE payment_events SET amount = 1", "DELETE FROM payment_events"):
        with pytest.raises(apsw.ConstraintError, match="append-only"):
            await store.write(lambda c, s=statement: c.execute(s))


async def test_a_balance_can_never_overflow_into_a_float(store, user):
    """SQLite turns an overflowing integer sum into REAL; the schema refuses that write."""
    top = 2**63 - 1
    await store.write(
        lambda c: c.execute("UPDATE billing SET credit_balance = ? WHERE sid = ?", (top, user.sid))
    )
    try:
        with pytest.raises(apsw.ConstraintError):
            await store.write(
                partial(ledger.append, entry=purchase(user.sid, "pi_big", 1), now=NOW)
            )
        assert await balance_of(store, user.sid) == top
        assert await store.read(lambda c: c.execute("SELECT COUNT(*) FROM payment_events").get) == 0
    finally:
        await store.write(
            lambda c: c.execute("UPDATE billing SET credit_balance = 0 WHERE sid = ?", (user.sid,))
        )


async def test_event_amounts_are_bounded_by_the_schema(store, user):
    with pytest.raises(apsw.ConstraintError):
        await store.write(
            partial(ledger.append, entry=purchase(user.sid, "pi_huge", 10**12 + 1), now=NOW)
        )


async def test_close_can_be_awaited_by_several_callers(settings):
    opened = await Store.open(settings.db_path)
    pending = opened.write(lambda c: c.execute("CREATE TABLE IF NOT EXISTS x (y)"))
    await asyncio.gather(pending, opened.close(), opened.close())
    with pytest.raises(StoreError):
        await opened.ping()


async def test_amount_signs_are_enforced_per_kind(store, user):
    refund_up = LedgerEntry(user.sid, "stripe", EntryKind.REFUND, "pi_r", 100, "usd")
    with pytest.raises(apsw.ConstraintError):
        await store.write(partial(ledger.append, entry=refund_up, now=NOW))


async def test_verify_reports_each_sid_whose_balance_is_not_its_ledger(store, user):
    other = await register(store, "5ff::1")
    await store.write(partial(ledger.append, entry=purchase(user.sid, "pi_1", 700), now=NOW))
    assert await store.read(ledger.verify_ledger) == []
    await store.write(
        lambda c: c.execute("UPDATE billing SET credit_balance = 5 WHERE sid = ?", (other.sid,))
    )
    [mismatch] = await store.read(ledger.verify_ledger)
    assert (mismatch.sid, mismatch.balance, mismatch.ledger_sum) == (other.sid, 5, 0)
    await store.write(
        lambda c: c.execute("UPDATE billing SET credit_balance = 0 WHERE sid = ?", (other.sid,))
    )


async def test_register_gives_one_sid_per_address_forever(store):
    first = await register(store, "400::1")
    again = await register(store, "400::1")
    assert first == again
    assert (await store.read(lambda c: balances.get(c, first.sid))).credit_balance == 0


async def test_a_failing_job_undoes_only_itself_in_its_batch(store, user):
    """Group commit: siblings in the same transaction keep their writes."""

    def good(conn: apsw.Connection, ref: str) -> bool:
        return ledger.append(conn, purchase(user.sid, ref, 100), now=NOW)

    def bad(conn: apsw.Connection) -> None:
        ledger.append(conn, purchase(user.sid, "pi_bad", 100), now=NOW)
        raise RuntimeError("job failed after writing")

    jobs = [store.write(partial(good, ref=f"pi_{i}")) for i in range(20)]
    jobs.insert(7, store.write(bad))
    results = await asyncio.gather(*jobs, return_exceptions=True)
    assert isinstance(results[7], RuntimeError)
    assert results[:7] + results[8:] == [True] * 20
    assert await balance_of(store, user.sid) == 2000
    refs = await store.read(
        lambda c: c.execute("SELECT external_ref FROM payment_events").fetchall()
    )
    assert ("pi_bad",) not in refs


async def test_concurrent_writes_share_commits(store, user):
    """200 writes in flight at once must not cost 200 fsyncs."""
    commits_before = store.writer_stats.commits
    writes = [
        store.write(partial(ledger.append, entry=purchase(user.sid, f"pi_g{i}", 10), now=NOW))
        for i in range(200)
    ]
    assert all(await asyncio.gather(*writes))
    assert await balance_of(store, user.sid) == 2000
    assert store.writer_stats.commits - commits_before < 100


async def test_close_commits_what_was_queued(settings, user, store):
    other = await Store.open(settings.db_path)
    pending = [
        asyncio.ensure_future(
            other.write(partial(ledger.append, entry=purchase(user.sid, f"pi_c{i}", 1), now=NOW))
        )
        for i in range(50)
    ]
    await asyncio.sleep(0)  # let every write reach the writer's queue
    await other.close()
    assert all(await asyncio.gather(*pending))
    assert await balance_of(store, user.sid) == 50
    with pytest.raises(StoreError, match="closed"):
        await other.write(lambda c: None)


async def test_two_processes_worth_of_writers_share_the_file(settings, user, store):
    """Both daemons open the same file; busy_timeout serialises their transactions."""
    second = await Store.open(settings.db_path)
    try:
        writes = [
            (store if i % 2 else second).write(
                partial(ledger.append, entry=purchase(user.sid, f"pi_s{i}", 3), now=NOW)
            )
            for i in range(100)
        ]
        assert all(await asyncio.gather(*writes))
    finally:
        await second.close()
    assert await balance_of(store, user.sid) == 300


async def test_write_timeout_raises_without_hanging(settings, store):
    """Another process holds the write lock: the caller gets TimeoutError, not a hang."""
    impatient = await Store.open(settings.db_path, busy_timeout_ms=10_000, write_timeout_s=0.2)
    locker = apsw.Connection(str(settings.db_path))
    locker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(TimeoutError):
            await impatient.write(lambda c: "never")
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert await impatient.write(lambda c: "written once the lock is free") == (
        "written once the lock is free"
    )
    await impatient.close()


async def test_ping_reports_a_closed_store(store):
    await store.ping()
    await store.close()
    with pytest.raises(StoreError):
        await store.ping()


def test_a_migration_never_drops_a_provisional_table_that_holds_rows(tmp_path):
    conn = apsw.Connection(str(tmp_path / "old.db"))
    for _ in conn.execute(MIGRATIONS[0]):
        pass
    conn.execute("PRAGMA user_version=1")
    conn.execute(
        "INSERT INTO login_challenges (id, mycelium_address, created_at, expires_at)"
        " VALUES ('kept', '4a1::1', 1, 2)"
    )
    with pytest.raises(apsw.ConstraintError):
        migrate(conn)
    assert conn.execute("PRAGMA user_version").get == 1
    assert conn.execute("SELECT id FROM login_challenges").get == "kept"
