"""The async handle a daemon holds on the database.

Reads run on their own connection in a worker thread, each bounded by a read timeout. In WAL
mode they never wait for a writer and the queries are short, but a read still touches the disk:
starting one writes a read mark into the memory-mapped -shm file, which blocks in a page fault
while the filesystem is frozen (fsfreeze, a stalled network disk). On the loop that froze the
whole daemon, /health included; in the thread it costs that one request a 503 after the read
timeout. Writes are group-committed on a second connection (group_commit.py), so the loop never
waits for an fsync or another process's lock; `write()` returns once the job's COMMIT is on disk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final, TypeVar

import apsw

from .db import StoreError, connect
from .group_commit import GroupCommitter, WriterStats
from .migrations import SCHEMA_VERSION, migrate, schema_version

T = TypeVar("T")
log = logging.getLogger(__name__)

# Reads queued behind one that does not come back are refused at once beyond this many, so a
# stalled disk cannot pile up work (and memory) behind it.
MAX_WAITING_READS: Final = 64
# While the disk refuses writes, readiness tries one harmless write at most this often, so it
# comes back as soon as the disk does even if nothing else writes meanwhile.
WRITE_PROBE_INTERVAL_S: Final = 2.0


class Store:
    """One process's access to `onboarding.db`. Build with `await Store.open(...)`."""

    def __init__(
        self,
        path: Path,
        reader: apsw.Connection,
        writer: GroupCommitter,
        *,
        write_timeout_s: float,
        read_timeout_s: float = 5.0,
        busy_timeout_ms: int = 5000,
    ) -> None:
        self.path = path
        self._reader = reader
        # One thread: the reader connection is used by one thread at a time.
        self._read_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-read")
        self._reads_waiting = 0
        self._writer = writer
        self._write_timeout_s = write_timeout_s
        self._read_timeout_s = read_timeout_s
        self._probed_at = 0.0
        self._busy_timeout_ms = busy_timeout_ms
        self._closing: asyncio.Future[None] | None = None
        self._scanner: apsw.Connection | None = None
        self._scan_lock = asyncio.Lock()

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        busy_timeout_ms: int = 5000,
        write_timeout_s: float = 15.0,
        read_timeout_s: float = 5.0,
    ) -> Store:
        """Open the file and apply pending migrations (in a thread: migrating may wait on a lock).

        `write_timeout_s` bounds every `write()` and `read_timeout_s` every `read()`: a request
        never waits forever on a disk or a lock held by another process.
        """

        def prepare() -> tuple[apsw.Connection, apsw.Connection]:
            write_conn = connect(path, busy_timeout_ms=busy_timeout_ms)
            try:
                migrate(write_conn)
                read_conn = connect(path, busy_timeout_ms=busy_timeout_ms)
            except BaseException:
                write_conn.close()
                raise
            return write_conn, read_conn

        write_conn, read_conn = await asyncio.to_thread(prepare)
        return cls(
            path,
            read_conn,
            GroupCommitter(write_conn),
            write_timeout_s=write_timeout_s,
            read_timeout_s=read_timeout_s,
            busy_timeout_ms=busy_timeout_ms,
        )

    async def read(self, query: Callable[[apsw.Connection], T]) -> T:
        """Run a short read-only query on the reader connection, in its thread.

        StoreError when it does not answer within the read timeout, or when too many reads
        already wait behind one that does not (the disk is stalled): the caller answers 503.
        """
        self._check_open()
        if self._reads_waiting >= MAX_WAITING_READS:
            raise StoreError(f"{self._reads_waiting} database reads are waiting (a stalled disk?)")
        self._reads_waiting += 1
        try:
            running = asyncio.get_running_loop().run_in_executor(
                self._read_thread, query, self._reader
            )
            try:
                async with asyncio.timeout(self._read_timeout_s):
                    return await running  # a timeout cancels it if it has not started yet
            except TimeoutError:
                raise StoreError(
                    f"the database did not answer a read within {self._read_timeout_s:g} s"
                    " (a stalled disk?)"
                ) from None
        finally:
            self._reads_waiting -= 1

    async def scan(self, query: Callable[[apsw.Connection], T]) -> T:
        """Run a long read (a whole-table scan) in a thread, on a connection of its own.

        `read` runs on the loop and must stay short; a scan of a large ledger would stall every
        request meanwhile. Scans take turns on one connection, opened on first use.
        """
        self._check_open()
        async with self._scan_lock:
            if self._scanner is None:
                self._scanner = await asyncio.to_thread(
                    connect, self.path, busy_timeout_ms=self._busy_timeout_ms
                )
            return await asyncio.to_thread(query, self._scanner)

    async def write(self, job: Callable[[apsw.Connection], T]) -> T:
        """Run `job` in a transaction (with whatever else is queued) and wait until it is durable.

        The job must only use the connection it is given and be short: it runs on the loop. If it
        raises, only its own changes are undone and the exception is raised here. After the write
        timeout, TimeoutError; a job already in a batch may still commit, so callers must be
        idempotent, as everything that touches the ledger is.
        """
        self._check_open()
        future: asyncio.Future[T] = self._writer.submit(job)  # submit is not generic (yet)
        async with asyncio.timeout(self._write_timeout_s):
            return await future

    @property
    def writer_stats(self) -> WriterStats:
        return self._writer.stats

    async def ping(self) -> None:
        """Raise StoreError unless the database answers, its schema is current and writes work.

        Writes "work" unless the writer is stuck past the write timeout or the disk refused the
        last one (full, I/O error, read-only); then a harmless probe write, at most every
        WRITE_PROBE_INTERVAL_S, finds out whether it has recovered.
        """
        try:
            version = await self.read(schema_version)
        except apsw.Error as exc:
            raise StoreError(f"database does not answer: {exc}") from exc
        if version != SCHEMA_VERSION:
            raise StoreError(f"schema version {version}, expected {SCHEMA_VERSION}")
        stalled = self._writer.stalled_for()
        if stalled > self._write_timeout_s:
            raise StoreError(
                f"writes have not completed for {stalled:.0f} s (disk, or a lock held elsewhere)"
            )
        failure = self._writer.disk_failure
        if failure is None:
            return
        if time.monotonic() - self._probed_at >= WRITE_PROBE_INTERVAL_S:
            self._probed_at = time.monotonic()
            try:
                async with asyncio.timeout(self._read_timeout_s):
                    await self.write(_probe_write)
                return  # the disk takes writes again (the commit cleared the failure)
            except (TimeoutError, apsw.Error, StoreError):
                failure = self._writer.disk_failure or failure
        ago = time.monotonic() - failure.at
        raise StoreError(f"writes fail: {failure.reason} ({ago:.0f} s ago)")

    async def close(self) -> None:
        """Let queued writes finish, then close both connections. Every caller waits for it."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        await self._writer.close()
        async with self._scan_lock:  # a scan under way finishes first
            if self._scanner is not None:
                self._scanner.close()
        # The reader is closed in its own thread, after any read still running there; a read
        # stuck on a frozen disk must not hold up the shutdown, so nobody waits for it.
        self._read_thread.submit(self._reader.close)
        self._read_thread.shutdown(wait=False, cancel_futures=False)
        stats = self._writer.stats
        log.info("database closed: %d writes in %d commits", stats.jobs, stats.commits)

    def _check_open(self) -> None:
        if self._closing is not None:
            raise StoreError("store is closed")


def _probe_write(conn: apsw.Connection) -> None:
    """Rewrite the schema version with its own value: a real page write, and changes nothing."""
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
