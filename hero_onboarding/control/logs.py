"""Log set-up for a foreground daemon: one line per event, with level and daemon name.

Lines go to stdout: the built-in supervisor collects them into rotating files, systemd and
hero_proc into their journals. `json` gives one object per line for machines.

A log call never writes to stdout itself: it puts the record on a bounded queue that one thread
drains to stdout. Whoever reads our stdout can stall (the supervisor writing to a frozen or full
disk, a journal that is backed up); a write on the event loop would then block once the pipe's
64 KiB are full, and the daemon with it, /health included. When the queue is full, new records
are dropped and counted, and the thread says how many once it can write again.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import logging.handlers
import queue
import sys
import threading
from typing import Final

TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S%z"
# Records waiting for stdout, at most; a few MiB of memory while the reader is stalled.
QUEUE_MAX_RECORDS: Final = 10_000
# How long the exit waits for queued lines to be written (stdout may be stalled for good).
EXIT_FLUSH_S: Final = 2.0


class JsonFormatter(logging.Formatter):
    def __init__(self, daemon: str) -> None:
        super().__init__(datefmt=TIME_FORMAT)
        self._daemon = daemon

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, self.datefmt),
            "level": record.levelname,
            "daemon": self._daemon,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class DroppingQueueHandler(logging.handlers.QueueHandler):
    """Queues records without ever blocking; a full queue drops the record and counts it."""

    def __init__(self, records: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(records)
        self._lock_dropped = threading.Lock()
        self._dropped = 0

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """Freeze the message and traceback text now: the arguments may change before the
        thread formats the record. The formatters use `exc_text` as they would `exc_info`.

        The record is frozen in place, not copied (a copy was a third of the cost of a log
        call on the webhook path): any other handler still gets the same message from
        getMessage(). Only a record with a traceback is copied, so the traceback stays with
        the record that other handlers see and the queue holds no frames.
        """
        message = record.getMessage()
        if record.exc_info:
            prepared = logging.makeLogRecord(record.__dict__)
            if not record.exc_text:
                prepared.exc_text = logging.Formatter().formatException(record.exc_info)
            prepared.exc_info = None
        else:
            prepared = record
        prepared.msg, prepared.args = message, None
        return prepared

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            with self._lock_dropped:
                self._dropped += 1

    def take_dropped(self) -> int:
        with self._lock_dropped:
            dropped, self._dropped = self._dropped, 0
        return dropped


class _ReportingDrops(logging.Handler):
    """The writing end, in the listener's thread: says what was dropped before the next line."""

    def __init__(self, output: logging.Handler, queued: DroppingQueueHandler) -> None:
        super().__init__()
        self._output = output
        self._queued = queued

    def handle(self, record: logging.LogRecord) -> bool:
        self.report_dropped()
        return self._output.handle(record)

    def report_dropped(self) -> None:
        dropped = self._queued.take_dropped()
        if dropped:
            self._output.handle(
                logging.makeLogRecord(
                    {
                        "name": __name__,
                        "levelno": logging.WARNING,
                        "levelname": "WARNING",
                        "msg": f"{dropped} log lines were dropped: stdout was not being read",
                    }
                )
            )

    def emit(self, record: logging.LogRecord) -> None:  # pragma: no cover - handle() is used
        self._output.emit(record)


class _Listener(logging.handlers.QueueListener):
    """Stopping never hangs the exit: what is queued gets EXIT_FLUSH_S to reach stdout."""

    def enqueue_sentinel(self) -> None:
        with contextlib.suppress(queue.Full):
            self.queue.put(self._sentinel, timeout=EXIT_FLUSH_S)  # type: ignore[attr-defined]

    def stop(self) -> None:
        thread = self._thread
        if thread is not None:
            self.enqueue_sentinel()
            thread.join(EXIT_FLUSH_S)
            self._thread = None
            if not thread.is_alive():  # the writer is idle: nothing else writes meanwhile
                for handler in self.handlers:
                    if isinstance(handler, _ReportingDrops):
                        handler.report_dropped()


def configure_logging(level: str, daemon: str, log_format: str = "text") -> None:
    """Route every record through the queue to stdout; call once, at the start of a process.

    The writing thread is a daemon thread, stopped (after writing what is queued) at exit.
    """
    output = logging.StreamHandler(sys.stdout)
    output.setFormatter(
        JsonFormatter(daemon)
        if log_format == "json"
        else logging.Formatter(
            f"%(asctime)s %(levelname)s {daemon} %(name)s: %(message)s", datefmt=TIME_FORMAT
        )
    )
    records: queue.Queue[logging.LogRecord] = queue.Queue(QUEUE_MAX_RECORDS)
    queued = DroppingQueueHandler(records)
    listener = _Listener(records, _ReportingDrops(output, queued))
    listener.start()
    atexit.register(listener.stop)
    # What no line shows is not gathered per call (the logging HOWTO's "Optimization"): the
    # caller's file and line (a walk up the stack), its thread, process and process name.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [queued]
    root.setLevel(level.upper())
