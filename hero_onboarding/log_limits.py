"""Log lines a stranger can cause, at most one per interval: no log flood from one client.

Whatever a client on the open internet can trigger at will (a malformed request, a connection
flood that runs the process out of file descriptors) must not be able to write the log as fast
as it can send: one client could otherwise flush the whole log rotation in a minute and take the
lines an operator needs with it. Such events are logged as one WARNING line without traceback,
at most one line per interval, and the next line says how many were left out in between.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from aiohttp.http_exceptions import HttpProcessingError

DEFAULT_INTERVAL_S: Final = 10.0
# What socket.accept() fails with when the process or the system is out of descriptors or
# memory; asyncio then pauses accepting for a second and calls the loop's exception handler.
_RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class RateLimit:
    """At most one event let through per `interval_s`; counts what it held back in between."""

    def __init__(
        self, interval_s: float = DEFAULT_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._next_at = float("-inf")
        self._suppressed = 0

    def allow(self) -> int | None:
        """None: leave this one out. Otherwise: let it through; how many were left out before."""
        now = self._clock()
        if now < self._next_at:
            self._suppressed += 1
            return None
        self._next_at = now + self._interval_s
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed


def suppressed_note(suppressed: int, interval_s: float) -> str:
    return (
        f" ({suppressed} more like it in the last {interval_s:g} s not logged)"
        if suppressed
        else ""
    )


class ClientErrorFilter(logging.Filter):
    """On aiohttp's request-handler logger: what a client did is one rate-limited line without
    traceback, instead of ERROR with ~730 bytes of traceback each.

    - a request aiohttp could not parse (bad request line, header too long, broken chunking:
      HttpProcessingError): WARNING "malformed request from ...";
    - a client that went away while its request was being read (ConnectionResetError out of a
      handler reading the body): INFO "client ... went away".

    Everything else on that logger (a handler's unhandled exception: our bug) passes untouched,
    traceback and all.
    """

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S, **rate: Any) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._malformed = RateLimit(interval_s, **rate)
        self._gone = RateLimit(interval_s, **rate)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            rate, level, text = self._malformed, logging.WARNING, "malformed request from %s: %s%s"
            reason = str(exc.message or type(exc).__name__)
        elif isinstance(exc, ConnectionResetError):
            rate, level, text = self._gone, logging.INFO, "client %s went away mid-request: %s%s"
            reason = str(exc) or type(exc).__name__
        else:
            return True
        suppressed = rate.allow()
        if suppressed is None:
            return False
        client = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg = text
        record.args = (
            client,
            reason.splitlines()[0][:200],
            suppressed_note(suppressed, self._interval_s),
        )
        record.exc_info = None
        record.exc_text = None
        record.levelno = min(record.levelno, level)
        record.levelname = logging.getLevelName(record.levelno)
        return True


class LoopErrorHandler:
    """The event loop's exception handler: socket.accept() failing for want of descriptors
    (EMFILE and friends) is one rate-limited WARNING line; anything else goes to the handler
    that was there before (asyncio's default logs it with its traceback)."""

    def __init__(
        self,
        logger: logging.Logger,
        previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        **rate: Any,
    ) -> None:
        self._log = logger
        self._previous = previous
        self._interval_s = interval_s
        self._rate = RateLimit(interval_s, **rate)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:
            suppressed = self._rate.allow()
            if suppressed is not None:
                self._log.warning(
                    "cannot accept connections: %s%s",
                    exc.strerror or exc,
                    suppressed_note(suppressed, self._interval_s),
                )
            return
        if self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)


def install_loop_handler(
    loop: asyncio.AbstractEventLoop, logger: logging.Logger
) -> Callable[[], None]:
    """Put a LoopErrorHandler on `loop`; returns what puts the previous handler back."""
    previous = loop.get_exception_handler()
    loop.set_exception_handler(LoopErrorHandler(logger, previous))
    return lambda: loop.set_exception_handler(previous)
