"""`--start`, `--stop`, `--status`: the whole service, under the built-in supervisor or hero_proc.

`auto` runs under hero_proc when its socket answers, else under the built-in supervisor.
Stopping and reporting look at both, so they find the service however it was started.
`--start`, `--stop` and `--restart` hold `<data_dir>/run/control.lock` while they work, so two
of them at once take turns instead of undoing each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from ..config import Settings
from ..rpc.hero_proc import (
    IS_DOWN,
    IS_UP,
    METHOD_NOT_FOUND,
    SERVICE_NOT_FOUND,
    HeroProcClient,
    HeroProcError,
    HeroProcUnavailable,
    ServiceSpec,
    ServiceStatus,
)
from .daemons import ALL_DAEMONS, DaemonSpec, Health, command, plan, service_name, settings_env
from .errors import CommandFailed
from .health import OK, probe_process, wait_healthy
from .identity import LockHeld, ProcessIdentity, lock_is_held, read_json, waiting_for_lock
from .sandbox_keys import load_or_create
from .secrets import (
    HERO_PROC,
    SECRET_KEY,
    WEBHOOK_SIGNING_KEY,
    SecretsError,
    hero_proc_at,
    look_up,
    server_secrets,
)
from .supervisor import LOCK_FILE, STATUS_FILE, RotatingLog

log = logging.getLogger(__name__)

BACKENDS: Final = ("auto", "hero_proc", "builtin")
BUILTIN: Final = "builtin"
HERO_PROC_BACKEND: Final = "hero_proc"
CONTROL_LOCK: Final = "control.lock"
LOG_TAIL_LINES: Final = 12
STOP_POLL_S: Final = 0.1


@dataclass
class DaemonState:
    name: str
    state: str
    pid: int | None = None
    uptime_s: float | None = None
    rss_bytes: int | None = None
    restarts: int = 0
    health: str = "not checked"
    note: str = ""


@dataclass
class ServiceState:
    backend: str | None  # None: not running anywhere
    sandbox: bool = False
    public_url: str | None = None
    admin_socket: str | None = None
    supervisor_pid: int | None = None
    note: str = ""  # what is wrong with the whole (a supervisor gone, hero_proc not answering)
    daemons: list[DaemonState] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.backend is not None

    @property
    def healthy(self) -> bool:
        return self.running and not self.note and all(d.health == OK for d in self.daemons)

    def as_json(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "healthy": self.healthy,
            "backend": self.backend,
            "sandbox": self.sandbox,
            "public_url": self.public_url,
            "admin_socket": self.admin_socket,
            "supervisor_pid": self.supervisor_pid,
            "note": self.note,
            "daemons": [asdict(d) for d in self.daemons],
        }


@contextlib.asynccontextmanager
async def controlling(settings: Settings) -> Any:
    """One --start/--stop/--restart at a time for a data directory.

    The wait covers the longest the other one can take: a restart stopping everything the slow
    way (each stop timeout, then SIGKILL), then starting, failing and undoing its start.
    """
    wait_s = settings.start_timeout_s * 2 + settings.stop_timeout_s * 6 + 30
    try:
        async with waiting_for_lock(settings.run_dir / CONTROL_LOCK, wait_s, on_wait=_say_waiting):
            yield
    except LockHeld:
        raise CommandFailed(
            f"another --start/--stop for {settings.data_dir} has not finished in {wait_s:g} s"
        ) from None


def _say_waiting() -> None:
    print("waiting for another --start/--stop/--restart to finish", file=sys.stderr, flush=True)


# --- the built-in supervisor ---


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


def start_builtin(settings: Settings, *, sandbox: bool) -> subprocess.Popen[bytes]:
    """Launch the supervisor, detached: its own session, no terminal, output to its log."""
    path = settings.logs_dir / "supervisor.log"
    RotatingLog(path).close()  # moves a grown log aside, as the daemons' logs are
    with path.open("ab") as output:
        return subprocess.Popen(  # noqa: S603 (our own interpreter and module, no shell)
            command("supervise", *(["--sandbox"] if sandbox else [])),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **settings_env(settings)},
            start_new_session=True,
            close_fds=True,
        )


async def stop_builtin(settings: Settings) -> bool:
    """Stop the supervisor (which stops its children), then any child it left behind.

    Only processes whose recorded identity (pid, start time, command line) still matches are
    signalled: a pid the kernel gave to someone else is left alone. True if anything ran.
    """
    record = _status_record(settings)
    if record is None:
        return False
    supervisor = ProcessIdentity.from_json(record.get("supervisor"))
    stopped_any = supervisor is not None and await _terminate(
        supervisor, settings.stop_timeout_s + 5
    )
    # Read again: a daemon the supervisor started while it was being stopped is recorded there.
    for child in _recorded_children(_status_record(settings) or record).values():
        if await _terminate(child, settings.stop_timeout_s):
            stopped_any = True  # the supervisor died without stopping it
    if not lock_is_held(settings.run_dir / LOCK_FILE):
        (settings.run_dir / STATUS_FILE).unlink(missing_ok=True)
    return stopped_any


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


async def builtin_state(settings: Settings) -> ServiceState:
    """What the supervisor's record says, checked against the live processes.

    A record whose supervisor is gone but whose daemons still run (it was SIGKILLed before
    they could follow it) is reported as running but broken, so nobody starts a second copy
    on top; --stop clears it.
    """
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
        backend=BUILTIN,
        sandbox=bool(record.get("sandbox")),
        public_url=record.get("public_url"),
        admin_socket=record.get("admin_socket"),
        supervisor_pid=supervisor.pid if supervisor and supervised else None,
        note="" if supervised else "the supervisor is gone; --stop cleans up",
    )
    for name, entry in (record.get("daemons") or {}).items():
        identity = alive.get(name)
        recorded = entry.get("state", "unknown")
        daemon = DaemonState(
            name=name,
            state=recorded if identity or recorded != "running" else "gone",
            restarts=int(entry.get("restarts") or 0),
            note=entry.get("note") or "",
        )
        if identity is not None:
            daemon.pid = identity.pid
            daemon.uptime_s = round(time.time() - identity.create_time, 1)
            daemon.rss_bytes = _rss(identity)
            daemon.health = await probe_process(_recorded_health(entry), identity.pid)
        else:
            daemon.health = "no process"
        state.daemons.append(daemon)
    return state


def _recorded_health(entry: dict[str, Any]) -> Health:
    recorded = entry.get("health") or {}
    socket = recorded.get("socket")
    return Health(url=recorded.get("url"), socket=Path(socket) if socket else None)


def _rss(identity: ProcessIdentity) -> int | None:
    process = identity.process()
    try:
        return int(process.memory_info().rss) if process else None
    except Exception:  # the process ended between two calls: no figure, not an error
        return None


def _given_up(settings: Settings) -> dict[str, str]:
    """Daemons the supervisor has stopped restarting, with why."""
    record = _status_record(settings) or {}
    return {
        name: entry.get("note", "")
        for name, entry in (record.get("daemons") or {}).items()
        if (entry or {}).get("state") == "failed"
    }


async def _builtin_pids(settings: Settings) -> dict[str, int | None]:
    record = _status_record(settings) or {}
    return {name: identity.pid for name, identity in _recorded_children(record).items()}


# --- hero_proc ---


def hero_proc_spec(spec: DaemonSpec, settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name=spec.service,
        exec=shlex.join(spec.argv),
        env=spec.env,
        after=spec.after,
        shutdown_timeout=math.ceil(settings.stop_timeout_s),
        log="stdout",
    )


async def start_hero_proc(socket: Path, specs: list[DaemonSpec], settings: Settings) -> None:
    """Create, monitor and start each service; on any failure remove what this call made."""
    async with HeroProcClient(socket) as hero_proc:
        made: list[str] = []
        try:
            for spec in specs:
                await _remove_service(hero_proc, spec.service, settings)  # a leftover definition
                await hero_proc.service_create(hero_proc_spec(spec, settings))
                made.append(spec.service)
                await hero_proc.service_monitor(spec.service)
                with _tolerating(IS_UP):  # monitoring may have started it already
                    await hero_proc.service_start(spec.service)
        except (HeroProcError, HeroProcUnavailable) as exc:
            for name in reversed(made):
                with contextlib.suppress(HeroProcError, HeroProcUnavailable):
                    await _remove_service(hero_proc, name, settings)
            raise CommandFailed(f"hero_proc could not start the service: {exc}") from None


async def _remove_service(hero_proc: HeroProcClient, name: str, settings: Settings) -> bool:
    """Stop (waiting until its process is gone, killing it if it must), forget and delete a
    service; True if it was running. zinit's stop only asks: the wait is ours."""
    status = await hero_proc.service_status(name)
    was_running = status is not None and status.pid > 0
    if status is not None:
        with _tolerating(SERVICE_NOT_FOUND):
            await hero_proc.service_stop(name)
        if not await _service_exited(hero_proc, name, settings.stop_timeout_s):
            with _tolerating(SERVICE_NOT_FOUND, IS_DOWN):  # it may exit just before
                await hero_proc.service_kill(name, "SIGKILL")
            if not await _service_exited(hero_proc, name, 5):
                raise CommandFailed(f"hero_proc's {name} did not stop, even after SIGKILL")
        with _tolerating(SERVICE_NOT_FOUND):
            await hero_proc.service_forget(name)
    with _tolerating(SERVICE_NOT_FOUND):  # a definition hero_proc does not monitor yet
        await hero_proc.service_delete(name)
    return was_running


async def _service_exited(hero_proc: HeroProcClient, name: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        status = await hero_proc.service_status(name)
        if status is None or status.pid == 0:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(STOP_POLL_S)


@contextlib.contextmanager
def _tolerating(*codes: int) -> Any:
    try:
        yield
    except HeroProcError as exc:
        if exc.code not in codes:
            raise


async def stop_hero_proc(socket: Path, settings: Settings) -> bool:
    """Stop every service at once; one that fails does not keep the others running."""
    async with HeroProcClient(socket) as hero_proc:
        results = await asyncio.gather(
            *(
                _remove_service(hero_proc, service_name(settings, daemon), settings)
                for daemon in ALL_DAEMONS
            ),
            return_exceptions=True,
        )
    failures = [result for result in results if isinstance(result, BaseException)]
    if failures and all(
        isinstance(f, HeroProcError) and f.code == METHOD_NOT_FOUND for f in failures
    ):
        log.warning("hero_proc at %s has no service methods we know: %s", socket, failures[0])
        return False
    if failures:
        raise CommandFailed(
            "hero_proc could not stop the service: " + "; ".join(str(f) for f in failures)
        )
    return any(results)


async def _hero_proc_statuses(socket: Path, settings: Settings) -> dict[str, ServiceStatus | None]:
    async with HeroProcClient(socket) as hero_proc:
        return {
            daemon: await hero_proc.service_status(service_name(settings, daemon))
            for daemon in ALL_DAEMONS
        }


async def hero_proc_state(socket: Path | None, settings: Settings) -> ServiceState:
    if socket is None:
        return ServiceState(backend=None)
    try:
        statuses = await _hero_proc_statuses(socket, settings)
    except HeroProcUnavailable:
        return ServiceState(backend=None)
    except HeroProcError as exc:  # its API differs from what we assume: say so, do not fail
        log.warning("hero_proc at %s did not report on our services: %s", socket, exc)
        return ServiceState(backend=None)
    if not any(status is not None for status in statuses.values()):
        return ServiceState(backend=None)
    sandbox = statuses["sandbox"] is not None
    state = ServiceState(
        backend=HERO_PROC_BACKEND,
        sandbox=sandbox,
        public_url=settings.public_url,
        admin_socket=str(settings.admin_socket_path),
    )
    specs = {spec.name: spec for spec in plan(settings, sandbox=sandbox)}
    for name, spec in specs.items():
        status = statuses[name]
        if status is None:
            state.daemons.append(DaemonState(name=name, state="missing", health="no service"))
            continue
        daemon = DaemonState(name=name, state=status.state, pid=status.pid or None)
        identity = ProcessIdentity.of(status.pid) if status.pid else None
        if identity is not None:
            daemon.uptime_s = round(time.time() - identity.create_time, 1)
            daemon.rss_bytes = _rss(identity)
        daemon.health = (
            await probe_process(spec.health, status.pid) if status.running else "not running"
        )
        state.daemons.append(daemon)
    return state


async def hero_proc_answers(socket: Path | None) -> bool:
    """Whether hero_proc is there to use. One that is there but failing is said once."""
    if socket is None:
        return False
    try:
        async with HeroProcClient(socket, timeout_s=2.0) as hero_proc:
            await hero_proc.ping()
    except HeroProcUnavailable:
        return False
    except HeroProcError as exc:
        log.warning("hero_proc at %s is there but failing (%s); not using it", socket, exc)
        return False
    return True


# --- the commands ---


async def current_state(settings: Settings, env: dict[str, str]) -> ServiceState:
    state = await builtin_state(settings)
    if state.running:
        return state
    return await hero_proc_state(hero_proc_at(env), settings)


async def start(
    settings: Settings, env: dict[str, str], *, sandbox: bool, backend: str
) -> tuple[ServiceState, bool]:
    """Start everything and wait until each daemon answers /health; (state, newly started)."""
    async with controlling(settings):
        already = await current_state(settings, env)
        if already.running:
            return already, False
        return await _start(settings, env, sandbox=sandbox, backend=backend), True


async def _start(
    settings: Settings, env: dict[str, str], *, sandbox: bool, backend: str
) -> ServiceState:
    socket = hero_proc_at(env)
    if backend == "auto":
        backend = HERO_PROC_BACKEND if await hero_proc_answers(socket) else BUILTIN
    elif backend == HERO_PROC_BACKEND and not await hero_proc_answers(socket):
        where = socket or "nowhere (HERO_PROC_SOCKET is empty)"
        raise CommandFailed(f"--backend hero_proc: nothing answers at {where}")
    if sandbox:
        load_or_create(settings.data_dir)
    else:
        await _check_secrets(settings, env, backend)
    specs = plan(settings, sandbox=sandbox, hero_proc_socket=socket)
    await stop_builtin(settings)  # daemons a killed supervisor may have left running

    supervisor: subprocess.Popen[bytes] | None = None
    log_offset = _size(settings.logs_dir / "supervisor.log")
    try:
        if backend == BUILTIN:
            supervisor = start_builtin(settings, sandbox=sandbox)
            running = supervisor
            answers = await wait_healthy(
                specs,
                settings.start_timeout_s,
                lambda: _builtin_pids(settings),
                alive=lambda: running.poll() is None and not _given_up(settings),
            )
        else:
            assert socket is not None  # hero_proc answered on it
            await start_hero_proc(socket, specs, settings)
            answers = await wait_healthy(
                specs, settings.start_timeout_s, lambda: _hero_proc_pids(socket, settings)
            )
    except BaseException:  # Ctrl-C, a hero_proc failure: leave nothing half-started
        await _undo(settings, env, supervisor)
        raise
    if all(answer == OK for answer in answers.values()):
        return await current_state(settings, env)

    failing = [name for name, answer in answers.items() if answer != OK]
    if supervisor is not None and supervisor.poll() is not None:
        why = f"the supervisor exited with code {supervisor.returncode}"
    elif given_up := _given_up(settings):
        why = ", ".join(f"{name} {note}" for name, note in given_up.items())
    else:
        why = f"not up within {settings.start_timeout_s:g} s"
    tails = _log_tails(settings, failing, supervisor_from=log_offset if supervisor else None)
    await _undo(settings, env, supervisor)
    detail = ", ".join(f"{name}: {answers[name]}" for name in failing)
    raise CommandFailed(f"the service did not come up: {why} ({detail}); stopped it.{tails}")


async def _hero_proc_pids(socket: Path, settings: Settings) -> dict[str, int | None]:
    statuses = await _hero_proc_statuses(socket, settings)
    return {name: status.pid if status else None for name, status in statuses.items()}


async def _undo(
    settings: Settings, env: dict[str, str], supervisor: subprocess.Popen[bytes] | None
) -> None:
    """Stop what this --start launched: the supervisor it holds, then whatever is recorded."""
    if supervisor is not None and supervisor.poll() is None:
        supervisor.terminate()  # our own unreaped child: its pid cannot have been reused
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(supervisor.wait, settings.stop_timeout_s + 5)
        if supervisor.poll() is None:
            supervisor.kill()
    await _stop(settings, env)


async def _check_secrets(settings: Settings, env: dict[str, str], backend: str) -> None:
    """Fail before starting anything when a daemon would not find its secrets."""
    lookup = await look_up(env, sandbox_mode=settings.mode == "sandbox")
    needed = server_secrets(lookup, provider=settings.provider)  # raises SecretsError naming it
    if backend != HERO_PROC_BACKEND:
        return
    # Under hero_proc the daemons are hero_proc's children, not ours: our environment never
    # reaches them, so what they need must be in hero_proc's secret store.
    required = {
        WEBHOOK_SIGNING_KEY: bool(needed.webhook_signing_keys),
        SECRET_KEY: needed.stripe_secret_key is not None,
    }
    for name, is_needed in required.items():
        if is_needed and lookup.source(name) != HERO_PROC:
            raise SecretsError(
                f"{name} is only in this shell's environment; daemons run by hero_proc read "
                "secrets from its store: put it there, or use --backend builtin"
            )


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _log_tails(settings: Settings, names: list[str], *, supervisor_from: int | None) -> str:
    """The last lines of the failing daemons' logs (and what the supervisor wrote this time)."""
    parts = []
    sources = [(settings.logs_dir / f"{name}.log", 0) for name in names]
    if supervisor_from is not None:
        sources.insert(0, (settings.logs_dir / "supervisor.log", supervisor_from))
    for path, offset in sources:
        try:
            with path.open("rb") as file:
                file.seek(offset)
                text = file.read().decode(errors="replace")
        except OSError:
            continue
        if lines := text.splitlines()[-LOG_TAIL_LINES:]:
            parts.append(f"\n--- last lines of {path} ---\n" + "\n".join(lines))
    return "".join(parts)


async def stop(settings: Settings, env: dict[str, str]) -> bool:
    """Stop whatever runs, under either backend; True if something did."""
    async with controlling(settings):
        return await _stop(settings, env)


async def _stop(settings: Settings, env: dict[str, str]) -> bool:
    stopped = await stop_builtin(settings)
    socket = hero_proc_at(env)
    if socket is not None and await hero_proc_answers(socket):
        stopped = await stop_hero_proc(socket, settings) or stopped
    return stopped


async def restart(
    settings: Settings, env: dict[str, str], *, sandbox: bool | None, backend: str | None
) -> ServiceState:
    """Stop, then start the way it ran (unless told otherwise)."""
    async with controlling(settings):
        was = await current_state(settings, env)
        await _stop(settings, env)
        return await _start(
            settings,
            env,
            sandbox=was.sandbox if sandbox is None else sandbox,
            backend=backend or was.backend or "auto",
        )
