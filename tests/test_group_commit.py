"""GroupCommitter under failure: odd job errors, cancellation mid-statement, locks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import apsw
import pytest

from hero_onboarding.store import StoreError
from hero_onboarding.store.db import connect
from hero_onboarding.store.group_commit import GroupCommitter


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "gc.db"
    conn = connect(path, busy_timeout_ms=1000)
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.close()
    return path


def rows(path: Path) -> int:
    conn = apsw.Connection(str(path))
    try:
        return conn.execute("SELECT COUNT(*) FROM t").get
    finally:
        conn.close()


def insert(conn: apsw.Connection) -> str:
    conn.execute("INSERT INTO t VALUES (1)")
    return "ok"


async def settle(future: asyncio.Future) -> object:
    """The future's result, or its exception: it must resolve, whatever happened."""
    await asyncio.wait_for(asyncio.wait([future]), timeout=10)
    return future.exception() or future.result()


async def test_a_job_raising_stopiteration_does_not_strand_its_batch(db):
    committer = GroupCommitter(connect(db, busy_timeout_ms=1000))
    odd = committer.submit(lambda conn: next(iter(())))
    good = [committer.submit(insert) for _ in range(3)]
    assert isinstance(await settle(odd), RuntimeError)
    assert [await settle(f) for f in good] == ["ok"] * 3
    await committer.close()
    assert rows(db) == 3


@pytest.mark.parametrize("cancel_after", range(6))
async def test_cancelling_the_flusher_never_loses_an_answer_or_leaves_a_transaction(
    db, cancel_after
):
    """Wherever the cancellation lands, the caller hears the truth about its write."""
    conn = connect(db, busy_timeout_ms=1000)
    committer = GroupCommitter(conn)
    future = committer.submit(insert)
    for _ in range(cancel_after):
        await asyncio.sleep(0)
    if committer._flusher is not None:
        committer._flusher.cancel()
    outcome = await settle(future)
    assert outcome == "ok" or isinstance(outcome, StoreError)
    assert rows(db) == (1 if outcome == "ok" else 0)
    assert conn.getautocommit()  # no transaction left open
    assert await settle(committer.submit(insert)) == "ok"  # and the committer still works
    await committer.close()


@pytest.mark.parametrize("cancel_after", [1, 3, 10])
async def test_cancelled_while_waiting_for_a_lock_leaves_no_lock_behind(db, cancel_after):
    conn = connect(db, busy_timeout_ms=2000)
    committer = GroupCommitter(conn)
    other = apsw.Connection(str(db))
    other.execute("BEGIN IMMEDIATE")
    future = committer.submit(insert)
    for _ in range(cancel_after):
        await asyncio.sleep(0)
    assert committer._flusher is not None
    committer._flusher.cancel()
    other.execute("COMMIT")  # the lock frees; the BEGIN waiting in a thread now succeeds
    outcome = await settle(future)
    assert rows(db) == (1 if outcome == "ok" else 0)
    assert conn.getautocommit()
    other.set_busy_timeout(1000)
    other.execute("BEGIN IMMEDIATE")  # another process can still write
    other.execute("ROLLBACK")
    other.close()
    await committer.close()
