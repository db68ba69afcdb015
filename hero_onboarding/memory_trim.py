"""Giving memory back to the system after a burst of connections (glibc's malloc_trim).

After 200 clients each held an unfinished 1 MiB body and left, the daemon stayed at its peak
size (320 MiB from 65) for good. Two things kept it there, found with tracemalloc and glibc's
malloc_stats: the handlers' exceptions (a client gone mid-body) sit in reference cycles with
their tracebacks and frames, whose locals hold each request's body buffer, until Python's
cyclic collector next runs a full pass, which may be a long time on a quiet daemon; and glibc
keeps heap memory freed in the middle of its heap instead of returning it. So, once per burst
(not per connection): gc.collect() on the loop, then malloc_trim(0) in a worker thread (it walks
the whole heap).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable
from typing import Final

log = logging.getLogger(__name__)

DELAY_S: Final = 1.0  # let the rest of a burst's connections close first


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where there is none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class MemoryTrimmer:
    """`soon()` after a burst: DELAY_S later, once, collect cycles and trim the heap."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay_s: float = DELAY_S) -> None:
        self._loop = loop
        self._delay_s = delay_s
        self._trim = _load_malloc_trim()
        self._pending: asyncio.TimerHandle | None = None
        self._running: asyncio.Future[int] | None = None
        self.runs = 0

    def soon(self) -> None:
        if self._pending is not None:
            return
        self._pending = self._loop.call_later(self._delay_s, self._start)

    def cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _start(self) -> None:
        self._pending = None
        if self._running is not None and not self._running.done():
            return
        self.runs += 1
        found = gc.collect()
        log.debug("after a burst of connections: %d unreachable objects collected", found)
        if self._trim is None:
            return
        self._running = self._loop.run_in_executor(None, self._trim, 0)
        self._running.add_done_callback(_log_outcome)


def _log_outcome(done: asyncio.Future[int]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.debug("malloc_trim failed: %s", done.exception())
