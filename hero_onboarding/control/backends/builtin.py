"""The built-in supervisor as a backend: launched detached, known through its status file.

The supervisor (control/supervisor.py) records what runs in `<data_dir>/run/status.json`, with
each process's identity; everything here reads that record and checks it against the live
processes, so it works from any process, however the supervisor ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Final

from ...config import Settings
from ..daemons import DaemonSpec, Health, command, settings_env
from ..health import probe_process
from ..identity import ProcessIdentity, lock_is_held, read_json
from ..service_state import DaemonState, ServiceState
from ..states import BackendKind, ProcessState
from ..supervisor import LOCK_FILE, STATUS_FILE, RotatingLog

STOP_POLL_S: Final = 0.1
SUPERVISOR_LOG: Final = "supervisor.log"


class BuiltinBackend:
    kind = BackendKind.BUILTIN
    passes_environment = True

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def available(self) -> bool:
        return True

    def unavailable_because(self) -> str:
        return "always available"

    def launch(self, specs: list[DaemonSpec], *, sandbox: bool) -> BuiltinLaunch:
        return BuiltinLaunch(self._settings, sandbox=sandbox)

    async def stop(self) -> bool:
        """Stop the supervisor (which stops its children), then any child it left behind.

        Only processes whose recorded identity (pid, start time, command line) still matches
        are signalled: a pid the kernel gave to someone else is left alone.
        """
        settings = self._settings
        record = _status_record(settings)
        if record is None:
            return False
        supervisor = ProcessIdentity.from_json(record.get("supervisor"))
        stopped_any = supervisor is not None and await _terminate(
            supervisor, settings.stop_timeout_s + 5
        )
        # Read again: a daemon the supervisor started while being stopped is recorded there.
        for child in _recorded_children(_status_record(settings) or record).values():
            if await _terminate(child, settings.stop_timeout_s):
                stopped_any = True  # the supervisor died without stopping it
        if not lock_is_held(settings.run_dir / LOCK_FILE):
            (settings.run_dir / STATUS_FILE).unlink(missing_ok=True)
        return stopped_any

    async def state(self) -> ServiceState:
        """What the supervisor's record says, checked against the live processes.

        A record whose supervisor is gone but whose daemons still run (it was SIGKILLed before
        they could follow it) is reported as running but broken, so nobody starts a second
        copy on top; --stop clears it.
        """
        settings = self._settings
        record = _status_record(settings)
        if record is None:
            return ServiceState(backend=None)
        supervised = lock_is_held(settings.run_dir / LOCK_FILE)
        children = _recorded_children(record)
        alive = {name: identity for name, identity in children.items() if identity.process()}
        if not supervised and not alive:
            return ServiceState(backend=None)
        supervisor = ProcessIdentity.from_json(record.get("supervisor"))
        state = ServiceState(
            backend=self.kind,
            sandbox=bool(record.get("sandbox")),
            public_url=record.get("public_url"),
            admin_socket=record.get("admin_socket"),
            supervisor_pid=supervisor.pid if supervisor and supervised else None,
            note="" if supervised else "the supervisor is gone; --stop cleans up",
        )
        for name, entry in (record.get("daemons") or {}).items():
            state.daemons.append(await _daemon_state(name, entry, alive.get(name)))
        return state


class BuiltinLaunch:
    """The supervisor this --start runs: our own child until it is stopped."""

    def __init__(self, settings: Settings, *, sandbox: bool) -> None:
        self._settings, self._sandbox = settings, sandbox
        self._log = settings.logs_dir / SUPERVISOR_LOG
        self._log_from = _size(self._log)
        self._supervisor: subprocess.Popen[bytes] | None = None

    async def begin(self) -> None:
        self._spawn()

    def _spawn(self) -> None:
        """Launch the supervisor, detached: its own session, no terminal, output to its log."""
        RotatingLog(self._log).close()  # moves a grown log aside, as the daemons' logs are
        self._log_from = _size(self._log)
        with self._log.open("ab") as output:
            self._supervisor = subprocess.Popen(  # noqa: S603 (our interpreter and module)
                command("supervise", *(["--sandbox"] if self._sandbox else [])),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, **settings_env(self._settings)},
                start_new_session=True,
                close_fds=True,
            )

    async def pids(self) -> dict[str, int | None]:
        record = _status_record(self._settings) or {}
        return {name: identity.pid for name, identity in _recorded_children(record).items()}

    def alive(self) -> bool:
        return self._exit_code() is None and not _given_up(self._settings)

    def why_down(self) -> str | None:
        if (code := self._exit_code()) is not None:
            return f"the supervisor exited with code {code}"
        if given_up := _given_up(self._settings):
            return ", ".join(f"{name} {note}" for name, note in given_up.items())
        return None

    def own_log(self) -> tuple[Path, int] | None:
        return (self._log, self._log_from) if self._supervisor is not None else None

    async def cancel(self) -> None:
        supervisor = self._supervisor
        if supervisor is None or supervisor.poll() is not None:
            return
        supervisor.terminate()  # our own unreaped child: its pid cannot have been reused
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(supervisor.wait, self._settings.stop_timeout_s + 5)
        if supervisor.poll() is None:
            supervisor.kill()

    def _exit_code(self) -> int | None:
        return None if self._supervisor is None else self._supervisor.poll()


async def _daemon_state(
    name: str, entry: dict[str, Any], identity: ProcessIdentity | None
) -> DaemonState:
    recorded = entry.get("state", ProcessState.UNKNOWN)
    daemon = DaemonState(
        name=name,
        state=recorded if identity or recorded != ProcessState.RUNNING else ProcessState.GONE,
        restarts=int(entry.get("restarts") or 0),
        note=entry.get("note") or "",
    )
    if identity is None:
        daemon.health = "no process"
        return daemon
    daemon.pid = identity.pid
    daemon.measure(identity)
    daemon.health = await probe_process(_recorded_health(entry), identity.pid)
    return daemon


def _status_record(settings: Settings) -> dict[str, Any] | None:
    record = read_json(settings.run_dir / STATUS_FILE)
    return record if isinstance(record, dict) else None


def _recorded_children(record: dict[str, Any]) -> dict[str, ProcessIdentity]:
    children = {}
    for name, entry in (record.get("daemons") or {}).items():
        identity = ProcessIdentity.from_json((entry or {}).get("identity"))
        if identity is not None:
            children[name] = identity
    return children


def _recorded_health(entry: dict[str, Any]) -> Health:
    recorded = entry.get("health") or {}
    socket = recorded.get("socket")
    return Health(url=recorded.get("url"), socket=Path(socket) if socket else None)


def _given_up(settings: Settings) -> dict[str, str]:
    """Daemons the supervisor has stopped restarting, with why."""
    record = _status_record(settings) or {}
    return {
        name: entry.get("note", "")
        for name, entry in (record.get("daemons") or {}).items()
        if (entry or {}).get("state") == ProcessState.FAILED
    }


async def _terminate(identity: ProcessIdentity, grace_s: float) -> bool:
    """SIGTERM, wait up to `grace_s`, then SIGKILL; True if the process was ours and alive."""
    if not identity.signal(signal.SIGTERM):
        return False
    if not await _gone(identity, grace_s):
        identity.signal(signal.SIGKILL)
        await _gone(identity, 5)
    return True


async def _gone(identity: ProcessIdentity, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while identity.process() is not None:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(STOP_POLL_S)
    return True


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
