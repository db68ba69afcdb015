"""The built-in supervisor: one detached process that keeps the daemons running.

`hero-onboarding --start` launches it (`hero-onboarding supervise`, in a session of its own).
It holds `<data_dir>/run/supervisor.lock` for its whole life, runs each daemon as a child,
copies the child's output into `<data_dir>/logs/<daemon>.log` (rotated by size), restarts a
child that exits with an exponential backoff, and gives up on one that crashes too often in a
short window, saying so in the status file. On SIGTERM it stops the children with SIGTERM,
then SIGKILL after the shutdown timeout, and exits. `status.json` records what runs, with
each process's identity, so `--status` and `--stop` work from another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final

from ..config import Settings
from .daemons import DaemonSpec
from .identity import ProcessIdentity, waiting_for_lock, write_json
from .private_files import open_private_append
from .states import ProcessState

log = logging.getLogger(__name__)

LOCK_FILE: Final = "supervisor.lock"
STATUS_FILE: Final = "status.json"
# A child that dies MAX_CRASHES times within CRASH_WINDOW_S is left down (and --status says
# why): a daemon that cannot start would otherwise restart forever and fill the logs.
MAX_CRASHES: Final = 5
CRASH_WINDOW_S: Final = 60.0
BACKOFF_FIRST_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0
STABLE_AFTER_S: Final = 30.0  # a child up this long starts its backoff from the beginning
LOG_MAX_BYTES: Final = 10 * 1024 * 1024
LOG_BACKUPS: Final = 5
READ_CHUNK: Final = 65536
LOCK_RETRY_S: Final = 2.0  # a --status probing the lock must not make a start fail
PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h


class RotatingLog:
    """Appends bytes to a file, moving it to `.1` (`.1` to `.2`, ...) once it is too big."""

    def __init__(
        self, path: Path, *, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS
    ) -> None:
        self.path, self._max_bytes, self._backups = path, max_bytes, backups
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._file = self._open()

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        if self._file.tell() >= self._max_bytes:
            self._rotate()

    def close(self) -> None:
        self._file.close()

    def _rotate(self) -> None:
        """Shift the old files up by one; whatever fails (someone removed them), the log is
        reopened, so the next write still lands somewhere."""
        self._file.close()
        try:
            for number in range(self._backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{number}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{number + 1}"))
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        finally:
            self._file = self._open()

    def _open(self) -> BinaryIO:
        """0600 whatever the umask: the logs hold addresses, sids and amounts."""
        return os.fdopen(open_private_append(self.path), "ab")


@dataclass(frozen=True)
class RestartPolicy:
    """How the supervisor restarts a child that exits: after `first_delay_s`, doubling each
    time up to `max_delay_s` (from the start again once a child stayed up `stable_after_s`),
    and not at all once it exited `max_crashes` times within `crash_window_s`.

    The defaults are for real use. Tests shorten the first delay through `supervise`'s hidden
    --backoff-first-s (see supervise.py), so a give-up takes a second, not half a minute.
    """

    first_delay_s: float = BACKOFF_FIRST_S
    max_delay_s: float = BACKOFF_MAX_S
    stable_after_s: float = STABLE_AFTER_S
    max_crashes: int = MAX_CRASHES
    crash_window_s: float = CRASH_WINDOW_S

    def delay_s(self, streak: int) -> float:
        """The wait before restart number `streak` (1 for the first) of an unstable child."""
        return min(self.first_delay_s * 2.0 ** (streak - 1), self.max_delay_s)


@dataclass
class Child:
    spec: DaemonSpec
    output: RotatingLog
    state: ProcessState = ProcessState.STARTING
    restarts: int = 0
    identity: ProcessIdentity | None = None
    started_at: float | None = None
    last_exit: str | None = None
    note: str = ""
    crashes: deque[float] = field(default_factory=deque)
    process: asyncio.subprocess.Process | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "restarts": self.restarts,
            "identity": self.identity.as_json() if self.identity else None,
            "started_at": self.started_at,
            "last_exit": self.last_exit,
            "note": self.note,
            "log": str(self.output.path),
            "health": {
                "url": self.spec.health.url,
                "socket": str(self.spec.health.socket) if self.spec.health.socket else None,
            },
        }


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        specs: list[DaemonSpec],
        *,
        sandbox: bool,
        policy: RestartPolicy | None = None,
    ) -> None:
        self._settings = settings
        self._sandbox = sandbox
        self._policy = policy or RestartPolicy()
        self._children = [
            Child(spec, RotatingLog(settings.logs_dir / f"{spec.name}.log")) for spec in specs
        ]
        self._stop = asyncio.Event()
        self._started_at = time.time()
        self._me = ProcessIdentity.of(os.getpid())

    async def run(self) -> None:
        """Hold the lock and keep every child up until SIGTERM/SIGINT; then stop them.

        Each keeper stops its own child, so a stop that lands while a child is being spawned
        still reaches it.
        """
        async with waiting_for_lock(self._settings.run_dir / LOCK_FILE, LOCK_RETRY_S):
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self._stop.set)
            log.info("supervising %s", ", ".join(c.spec.name for c in self._children))
            self._save()
            keepers = [asyncio.create_task(self._keep_up(child)) for child in self._children]
            await self._stop.wait()
            log.info("stopping")
            await asyncio.gather(*keepers)
            for child in self._children:
                child.output.close()
            (self._settings.run_dir / STATUS_FILE).unlink(missing_ok=True)
            log.info("stopped")

    async def _keep_up(self, child: Child) -> None:
        """Run `child` until the stop; any surprise is logged and the child run again."""
        streak = 0
        policy = self._policy
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                returncode = await self._run_once(child)
            except Exception:  # a bug here must not end supervision of this daemon
                log.exception("supervising %s failed", child.spec.name)
                returncode = None
            if self._stop.is_set():
                break
            now = time.monotonic()
            child.crashes.append(now)
            while child.crashes and child.crashes[0] < now - policy.crash_window_s:
                child.crashes.popleft()
            log.warning("%s exited (%s)", child.spec.name, child.last_exit)
            if len(child.crashes) >= policy.max_crashes:
                child.state = ProcessState.FAILED
                child.note = (
                    f"gave up after {policy.max_crashes} exits within "
                    f"{policy.crash_window_s:.0f} s; see {child.output.path}"
                )
                log.error("%s: %s", child.spec.name, child.note)
                self._save()
                return
            streak = 1 if now - started >= policy.stable_after_s else streak + 1
            delay = policy.delay_s(streak)
            child.state = ProcessState.BACKOFF
            child.note = f"restarting in {delay:.1f} s after {child.last_exit or returncode}"
            self._save()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if not self._stop.is_set():
                child.restarts += 1
        child.state = ProcessState.STOPPED

    async def _run_once(self, child: Child) -> int | None:
        """Start the child and wait until it exits, or until the stop (then stop it)."""
        try:
            process = await asyncio.create_subprocess_exec(
                *child.spec.argv,
                env={**os.environ, **child.spec.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=_die_with_parent(os.getpid()),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            child.last_exit = f"could not start: {exc}"
            return None
        child.process = process
        child.identity = ProcessIdentity.of(process.pid)
        child.started_at = time.time()
        child.state, child.note = ProcessState.RUNNING, ""
        self._save()
        exited = asyncio.create_task(self._watch(child, process))
        stopping = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            return await exited if exited.done() else None
        finally:
            stopping.cancel()
            if process.returncode is None:  # the stop came, or watching failed: never leave it
                await self._stop_child(child, process)
            if not exited.done():
                exited.cancel()

    async def _watch(self, child: Child, process: asyncio.subprocess.Process) -> int:
        assert process.stdout is not None
        while chunk := await process.stdout.read(READ_CHUNK):
            with contextlib.suppress(OSError, ValueError):  # lose lines, keep draining the pipe
                child.output.write(chunk)
        returncode = await process.wait()
        child.last_exit = (
            f"signal {signal.strsignal(-returncode) or -returncode}"
            if returncode < 0
            else f"code {returncode}"
        )
        return returncode

    async def _stop_child(self, child: Child, process: asyncio.subprocess.Process) -> None:
        process.terminate()
        grace = self._settings.stop_timeout_s
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), grace)
        except TimeoutError:
            log.warning("%s did not stop within %.1f s: killing it", child.spec.name, grace)
            process.kill()
            await process.wait()

    def _save(self) -> None:
        """Record the state for --status and --stop; failing to is logged, never fatal."""
        try:
            self._write_status()
        except OSError as exc:
            log.error("could not record the status in %s: %s", self._settings.run_dir, exc)

    def _write_status(self) -> None:
        write_json(
            self._settings.run_dir / STATUS_FILE,
            {
                "supervisor": self._me.as_json() if self._me else None,
                "started_at": self._started_at,
                "sandbox": self._sandbox,
                "public_url": self._settings.public_url,
                "admin_socket": str(self._settings.admin_socket_path),
                "daemons": {child.spec.name: child.as_json() for child in self._children},
            },
        )


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec hook making the kernel SIGTERM the child if the supervisor dies (Linux).

    A supervisor killed with SIGKILL (or by the OOM killer) then takes its daemons with it,
    instead of leaving them holding the ports with nobody to restart or stop them. The prctl
    symbol is looked up here, in the parent; the child only calls it, then checks that its
    parent is still `parent` (it may have died before the prctl took effect).
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)

    return hook
