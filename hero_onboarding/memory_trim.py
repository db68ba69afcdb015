"""Giving memory back to the system after a burst of connections (glibc's malloc_trim).

Request buffers are freed when their connections close, but glibc keeps freed heap memory for
later instead of returning it: after 200 clients each held an unfinished 1 MiB body the daemon
stayed at its peak size long after they left. malloc_trim(0) hands the free pages back. It is
called off the event loop, once per burst, not per connection (it walks the whole heap).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
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
    """`soon()` after a burst: malloc_trim runs in a worker thread DELAY_S later, once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay_s: float = DELAY_S) -> None:
        self._loop = loop
        self._delay_s = delay_s
        self._trim = _load_malloc_trim()
        self._pending: asyncio.TimerHandle | None = None
        self._running: asyncio.Future[int] | None = None
        self.runs = 0

    def soon(self) -> None:
        if self._trim is None or self._pending is not None:
            return
        self._pending = self._loop.call_later(self._delay_s, self._start)

    def cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _start(self) -> None:
        self._pending = None
        if self._trim is None or (self._running is not None and not self._running.done()):
            return
        self.runs += 1
        self._running = self._loop.run_in_executor(None, self._trim, 0)
        self._running.add_done_callback(_log_outcome)


def _log_outcome(done: asyncio.Future[int]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.debug("malloc_trim failed: %s", done.exception())
