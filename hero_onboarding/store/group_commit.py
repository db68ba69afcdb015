"""Group commit: concurrent write jobs share one transaction and one fsync.

With synchronous=FULL every COMMIT waits for the disk. One commit per webhook caps throughput at
the disk's fsyncs per second, and a commit on the event loop stalls every other request for it.
So jobs queue here; a single flusher task takes everything queued, runs each job inside its own
SAVEPOINT (one job's failure undoes only that job) and commits the lot once. The statements run
on the event loop, as the short local APSW calls they are; only the calls that can wait run in a
worker thread, so the loop never blocks: BEGIN IMMEDIATE (another process's lock; and starting a
transaction writes a read mark into the WAL's memory-mapped -shm file, which blocks in a page
fault for as long as the filesystem is frozen) and COMMIT (the disk). Once BEGIN returned, the
jobs' statements read pages with pread(), which a frozen filesystem still serves, and write only
to SQLite's own cache until COMMIT. While one batch is on disk the next one gathers. A job's
caller hears back only after the COMMIT that made its write durable returned.

A batch that fails on the disk itself (full, I/O error, read-only, cannot reopen) is remembered
as `disk_failure` until a later commit succeeds: readiness reports it, since retrying cannot
help until someone frees space or fixes the mount.

Measured (scripts/bench_webhooks.py, 2 vCPUs): running the jobs on a dedicated writer thread
instead served ~2,400 events/s against ~3,900 for this design; that thread had to win the GIL
back from the busy loop after every statement.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apsw

from .db import DISK_ERRORS, StoreError

log = logging.getLogger(__name__)

WriteJob = Callable[[apsw.Connection], Any]


@dataclass(frozen=True, slots=True)
class DiskFailure:
    """The last write the disk refused: when (monotonic seconds) and SQLite's reason."""

    at: float
    reason: str


@dataclass(slots=True)
class WriterStats:
    """Counters since start: jobs per commit shows how well writes are being grouped."""

    commits: int = 0
    jobs: int = 0


class GroupCommitter:
    """Owns the write connection. Submit jobs from the event loop; close once."""

    def __init__(self, conn: apsw.Connection, *, max_batch: int = 128) -> None:
        # max_batch bounds how long one batch's jobs hold the loop (~40 us each).
        self._conn = conn
        self._max_batch = max_batch
        self._queued: list[tuple[WriteJob, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._cancelled = False  # the flusher was cancelled mid-statement: stop after this batch
        self._busy_since = 0.0  # when the writer last went from idle to busy
        self._progress_at = 0.0  # when it last finished a batch
        self.disk_failure: DiskFailure | None = None  # set by a refused write, cleared by a commit
        self.stats = WriterStats()

    def stalled_for(self) -> float:
        """Seconds the writer has had work without finishing any (0 when idle or moving).

        Under load it is always busy, so readiness asks whether it still makes progress.
        """
        if self._flusher is None:
            return 0.0
        return time.monotonic() - max(self._busy_since, self._progress_at)

    def submit(self, job: WriteJob) -> asyncio.Future[Any]:
        """Queue `job`; the future resolves once its transaction is durable (or it failed)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((job, future))
        if self._flusher is None:
            self._busy_since = time.monotonic()
            self._start_flusher()
        return future

    async def close(self) -> None:
        """Finish every job already queued, then close the connection."""
        while self._flusher is not None:
            await asyncio.wait([self._flusher])  # its done-callback runs before we resume
        await asyncio.to_thread(self._conn.close)

    def _start_flusher(self) -> None:
        self._flusher = asyncio.create_task(self._flush(), name="group-commit")
        self._flusher.add_done_callback(self._flusher_done)

    def _flusher_done(self, task: asyncio.Task[None]) -> None:
        """A done-callback rather than `finally`: it also runs for a task cancelled unstarted."""
        self._flusher = None
        if task.cancelled() or task.exception() is not None:
            # Loop teardown (or a bug): nothing will run what is still queued; say so.
            _fail(self._queued, StoreError("the store stopped before this write ran"))
            self._queued.clear()
        elif self._queued:  # submitted after the flusher's last look at the queue
            self._start_flusher()

    async def _flush(self) -> None:
        self._cancelled = False
        while self._queued:
            batch = self._queued[: self._max_batch]
            del self._queued[: self._max_batch]
            # A caller that gave up (timeout, cancellation) no longer wants its job run.
            live = [(job, future) for job, future in batch if not future.done()]
            if live:
                try:
                    await self._commit(live)
                finally:
                    self._progress_at = time.monotonic()
            if self._cancelled:
                raise asyncio.CancelledError

    async def _in_thread(self, sql: str) -> None:
        """Run a statement that may wait (lock, disk) in a worker thread.

        If the flusher is cancelled meanwhile, the statement still runs, and the connection must
        never be used by two threads: so wait for it, finish this batch on its real outcome, and
        let _flush stop after it.
        """
        running = asyncio.ensure_future(asyncio.to_thread(self._conn.execute, sql))
        try:
            await asyncio.shield(running)
        except asyncio.CancelledError:
            self._cancelled = True
            await asyncio.wait([running])
            running.result()  # the statement's own error, if it had one

    async def _commit(self, batch: list[tuple[WriteJob, asyncio.Future[Any]]]) -> None:
        conn = self._conn
        outcomes: list[tuple[asyncio.Future[Any], BaseException | None, Any]] = []
        try:
            await self._in_thread("BEGIN IMMEDIATE")
            # Callers may have given up while we waited for the lock.
            batch = [(job, future) for job, future in batch if not future.done()]
            for job, future in batch:
                conn.execute("SAVEPOINT job")
                try:
                    result = job(conn)
                except Exception as exc:  # the job's own failure: undo that job alone
                    self._note_disk_failure(exc)
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((future, exc, None))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((future, None, result))
            await self._in_thread("COMMIT")
        except BaseException as exc:  # the transaction itself broke: nothing in it is durable
            log.error("write batch of %d jobs failed and was rolled back: %r", len(batch), exc)
            self._note_disk_failure(exc)
            if not conn.getautocommit():
                try:
                    conn.execute("ROLLBACK")
                except apsw.Error as rollback_exc:
                    log.error("rollback failed: %s", rollback_exc)
            if isinstance(exc, Exception):
                _fail(batch, exc)
                return
            _fail(batch, StoreError("the store stopped while this write ran; it was rolled back"))
            raise
        self.stats.commits += 1
        self.stats.jobs += len(batch)
        if self.disk_failure is not None:
            log.warning("writes succeed again (after: %s)", self.disk_failure.reason)
            self.disk_failure = None
        for future, error, result in outcomes:
            if future.done():
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(_settable(error))

    def _note_disk_failure(self, exc: BaseException) -> None:
        if isinstance(exc, DISK_ERRORS):
            self.disk_failure = DiskFailure(time.monotonic(), f"{type(exc).__name__}: {exc}")


def _fail(batch: list[tuple[WriteJob, asyncio.Future[Any]]], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(_settable(exc))


def _settable(exc: BaseException) -> BaseException:
    """asyncio refuses StopIteration as a future's exception; wrap it rather than strand others."""
    if isinstance(exc, StopIteration):
        return RuntimeError(f"write job raised StopIteration: {exc!r}")
    return exc
