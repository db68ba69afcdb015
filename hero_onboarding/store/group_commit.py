"""A writer thread that commits concurrent write jobs together (group commit).

With synchronous=FULL every COMMIT waits for the disk. Run one commit per webhook on the event
loop and the loop stalls for each fsync; run one per webhook on a thread and throughput is
capped by fsyncs per second. Here a single thread owns the write connection, takes every job
queued while the previous commit was on disk, runs each inside its own SAVEPOINT (so one job's
failure undoes only that job) and commits them all with one fsync. A job's caller hears back
only after the COMMIT that made its write durable returned.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apsw

log = logging.getLogger(__name__)

WriteJob = Callable[[apsw.Connection], Any]


@dataclass(frozen=True, slots=True)
class _Queued:
    job: WriteJob
    future: concurrent.futures.Future[Any]


_STOP = object()


@dataclass(slots=True)
class WriterStats:
    """Counters since start: commits vs jobs shows how well writes are being grouped."""

    commits: int = 0
    jobs: int = 0


class GroupCommitWriter:
    """Owns the write connection and its thread. Submit jobs; close once."""

    def __init__(self, conn: apsw.Connection, *, max_batch: int = 256) -> None:
        self._conn = conn
        self._max_batch = max_batch
        self.stats = WriterStats()  # written by the writer thread only
        self._queue: queue.SimpleQueue[_Queued | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="db-writer", daemon=True)
        self._thread.start()

    def submit(self, job: WriteJob) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put(_Queued(job, future))
        return future

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout: float | None = None) -> None:
        """Finish every job already queued, then close the connection (blocking)."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            # Jobs whose caller gave up (cancelled) are dropped; the rest can no longer be
            # cancelled, so their callers are sure to hear the outcome.
            live = [
                q
                for q in batch
                if isinstance(q, _Queued) and q.future.set_running_or_notify_cancel()
            ]
            if live:
                self._commit(live)
        self._conn.close()

    def _commit(self, batch: list[_Queued]) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except apsw.Error as exc:
            _fail_all(batch, exc)
            return
        outcomes: list[tuple[_Queued, bool, Any]] = []
        try:
            for queued in batch:
                conn.execute("SAVEPOINT job")
                try:
                    result = queued.job(conn)
                except BaseException as exc:  # the job's own failure: undo that job alone
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((queued, False, exc))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((queued, True, result))
            conn.execute("COMMIT")
            self.stats.commits += 1
            self.stats.jobs += len(batch)
        except Exception as exc:  # the transaction itself broke: nothing in it is durable
            log.exception("write batch of %d jobs failed; rolled back", len(batch))
            if not conn.getautocommit():
                try:
                    conn.execute("ROLLBACK")
                except apsw.Error:
                    log.exception("rollback failed")
            _fail_all(batch, exc)
            return
        for queued, ok, value in outcomes:
            if ok:
                queued.future.set_result(value)
            else:
                queued.future.set_exception(value)


def _fail_all(batch: list[_Queued], exc: BaseException) -> None:
    for queued in batch:
        queued.future.set_exception(exc)
