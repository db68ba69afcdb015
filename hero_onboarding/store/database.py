"""The async handle a daemon holds on the database.

Reads run on the event loop on their own connection: in WAL mode they never wait for a writer,
and the queries are short, indexed and local. Writes are group-committed on a second connection
(group_commit.py), so the loop never waits for an fsync or another process's lock; `write()`
returns once the job's COMMIT is on disk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import apsw

from .db import StoreError, connect
from .group_commit import GroupCommitter, WriterStats
from .migrations import SCHEMA_VERSION, migrate, schema_version

T = TypeVar("T")
log = logging.getLogger(__name__)


class Store:
    """One process's access to `onboarding.db`. Build with `await Store.open(...)`."""

    def __init__(
        self,
        path: Path,
        reader: apsw.Connection,
        writer: GroupCommitter,
        *,
        write_timeout_s: float,
        busy_timeout_ms: int = 5000,
    ) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer
        self._write_timeout_s = write_timeout_s
        self._busy_timeout_ms = busy_timeout_ms
        self._closing: asyncio.Future[None] | None = None
        self._scanner: apsw.Connection | None = None
        self._scan_lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, path: Path, *, busy_timeout_ms: int = 5000, write_timeout_s: float = 15.0
    ) -> Store:
        """Open the file and apply pending migrations (in a thread: migrating may wait on a lock).

        `write_timeout_s` bounds every `write()`: a request never waits forever on a disk or a
        lock held by another process.
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
            GroupCommitter(write_conn, busy_timeout_ms=busy_timeout_ms),
            write_timeout_s=write_timeout_s,
            busy_timeout_ms=busy_timeout_ms,
        )

    async def read(self, query: Callable[[apsw.Connection], T]) -> T:
        """Run a read-only query on the loop's own connection."""
        self._check_open()
        return query(self._reader)

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
        future = self._writer.submit(job)
        async with asyncio.timeout(self._write_timeout_s):
            return await future

    @property
    def writer_stats(self) -> WriterStats:
        return self._writer.stats

    async def ping(self) -> None:
        """Raise unless the database answers and its schema is current."""
        self._check_open()
        try:
            version = schema_version(self._reader)
        except apsw.Error as exc:
            raise StoreError(f"database does not answer: {exc}") from exc
        if version != SCHEMA_VERSION:
            raise StoreError(f"schema version {version}, expected {SCHEMA_VERSION}")
        stalled = self._writer.stalled_for()
        if stalled > self._write_timeout_s:
            raise StoreError(
                f"writes have not completed for {stalled:.0f} s (disk, or a lock held elsewhere)"
            )

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
        self._reader.close()
        stats = self._writer.stats
        log.info("database closed: %d writes in %d commits", stats.jobs, stats.commits)

    def _check_open(self) -> None:
        if self._closing is not None:
            raise StoreError("store is closed")
