"""Knowing a process is ours before signalling it, and the supervisor's lock.

A pid alone names a process only until it exits: the kernel hands the number to the next one.
So a pid is recorded with the process's start time and command line, and signalled only while
all three still match; a stale record pointing at someone else's process is never acted on.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import psutil

from ..errors import HeroOnboardingError

CREATE_TIME_SLACK_S: Final = 0.05
LOCK_POLL_S: Final = 0.05


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    create_time: float
    cmdline: tuple[str, ...]

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        try:
            process = psutil.Process(pid)
            with process.oneshot():
                return cls(pid, process.create_time(), tuple(process.cmdline()))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None

    @classmethod
    def from_json(cls, data: Any) -> ProcessIdentity | None:
        """A recorded identity, or None for anything that does not look like one."""
        try:
            return cls(int(data["pid"]), float(data["create_time"]), tuple(data["cmdline"]))
        except (KeyError, TypeError, ValueError):
            return None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "cmdline": list(self.cmdline)}

    def process(self) -> psutil.Process | None:
        """The live process, only if it is still this one (not a recycled pid)."""
        try:
            process = psutil.Process(self.pid)
            with process.oneshot():
                same = (
                    abs(process.create_time() - self.create_time) <= CREATE_TIME_SLACK_S
                    and tuple(process.cmdline()) == self.cmdline
                    and process.status() != psutil.STATUS_ZOMBIE
                )
            return process if same else None
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None

    def signal(self, signum: signal.Signals) -> bool:
        """Send `signum` if the process is still this one; True if it was sent."""
        process = self.process()
        if process is None:
            return False
        try:
            process.send_signal(signum)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False
        return True


def read_json(path: Path) -> Any:
    """A small JSON file, or None when it is missing or unreadable (a crash mid-write)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: Any) -> None:
    """Replace `path` whole (readers see the old file or the new one, never half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(data, indent=1))
    os.replace(partial, path)


class LockHeld(HeroOnboardingError, RuntimeError):
    """Another supervisor holds the lock."""


@contextlib.contextmanager
def holding_lock(path: Path) -> Iterator[None]:
    """An exclusive flock for as long as the block runs; LockHeld if someone has it.

    The kernel drops a flock when its holder dies, however it dies, so a crashed supervisor
    never leaves a lock behind (unlike a bare pid file).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(str(path)) from None
        yield
    finally:
        os.close(descriptor)


def lock_is_held(path: Path) -> bool:
    try:
        with holding_lock(path):
            return False
    except LockHeld:
        return True


@contextlib.asynccontextmanager
async def waiting_for_lock(
    path: Path, wait_s: float, *, on_wait: Callable[[], None] | None = None
) -> AsyncIterator[None]:
    """`holding_lock`, retried for up to `wait_s` while someone else has it (then LockHeld);
    `on_wait` is called once, when the first try finds it taken."""
    deadline = time.monotonic() + wait_s
    lock = contextlib.ExitStack()
    while True:
        try:
            lock.enter_context(holding_lock(path))
            break
        except LockHeld:
            if time.monotonic() > deadline:
                raise
            if on_wait is not None:
                on_wait()
                on_wait = None
            await asyncio.sleep(LOCK_POLL_S)
    with lock:
        yield
