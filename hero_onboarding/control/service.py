"""`--start`, `--stop`, `--status`: the whole service, under the built-in supervisor or hero_proc.

`auto` runs under hero_proc when its socket answers, else under the built-in supervisor.
Stopping and reporting look at both, so they find the service however it was started.
"""

from __future__ import annotations

import asyncio
import math
import os
import shlex
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from ..config import Settings
from ..rpc.hero_proc import (
    HeroProcClient,
    HeroProcError,
    HeroProcUnavailable,
    ServiceSpec,
)
from .daemons import SERVICE_PREFIX, DaemonSpec, Health, command, plan, settings_env
from .errors import CommandFailed
from .health import probe, wait_healthy
from .identity import ProcessIdentity, lock_is_held, read_json
from .sandbox_keys import load_or_create
from .secrets import (
    HERO_PROC,
    SecretLookup,
    SecretsError,
    hero_proc_at,
    look_up,
    server_secrets,
)
from .supervisor import LOCK_FILE, STATUS_FILE

BACKENDS: Final = ("auto", "hero_proc", "builtin")
BUILTIN: Final = "builtin"
HERO_PROC_BACKEND: Final = "hero_proc"
DAEMON_NAMES: Final = ("sandbox", "server", "admin")
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
    daemons: list[DaemonState] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.backend is not None

    @property
    def healthy(self) -> bool:
        return self.running and all(d.health == "ok" for d in self.daemons)

    def as_json(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "healthy": self.healthy,
            "backend": self.backend,
            "sandbox": self.sandbox,
            "public_url": self.public_url,
            "admin_socket": self.admin_socket,
            "supervisor_pid": self.supervisor_pid,
            "daemons": [asdict(d) for d in self.daemons],
        }


# --- the built-in supervisor ---


def _status_record(settings: Settings) -> dict[str, Any] | None:
    record = read_json(settings.run_dir / STATUS_FILE)
    return record if isinstance(record, dict) else None


def builtin_running(settings: Settings) -> bool:
    return lock_is_held(settings.run_dir / LOCK_FILE)


def start_builtin(settings: Settings, *, sandbox: bool) -> subprocess.Popen[bytes]:
    """Launch the supervisor, detached: its own session, no terminal, output to its log."""
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    with (settings.logs_dir / "supervisor.log").open("ab") as output:
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
    grace = settings.stop_timeout_s
    supervisor = ProcessIdentity.from_json(record.get("supervisor"))
    stopped_any = supervisor is not None and await _terminate(supervisor, grace + 5)
    for entry in (record.get("daemons") or {}).values():
        child = ProcessIdentity.from_json((entry or {}).get("identity"))
        if child is not None and await _terminate(child, grace):
            stopped_any = True  # the supervisor died without stopping it (SIGKILL)
    if not builtin_running(settings):
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
    record = _status_record(settings)
    if record is None or not builtin_running(settings):
        return ServiceState(backend=None)
    supervisor = ProcessIdentity.from_json(record.get("supervisor"))
    state = ServiceState(
        backend=BUILTIN,
        sandbox=bool(record.get("sandbox")),
        public_url=record.get("public_url"),
        admin_socket=record.get("admin_socket"),
        supervisor_pid=supervisor.pid if supervisor else None,
    )
    for name, entry in (record.get("daemons") or {}).items():
        identity = ProcessIdentity.from_json(entry.get("identity"))
        process = identity.process() if identity else None
        health_entry = entry.get("health") or {}
        socket = health_entry.get("socket")
        health = Health(url=health_entry.get("url"), socket=Path(socket) if socket else None)
        daemon = DaemonState(
            name=name,
            state=entry.get("state", "unknown")
            if process or entry.get("state") != "running"
            else "gone",
            restarts=int(entry.get("restarts") or 0),
            note=entry.get("note") or "",
        )
        if process is not None and identity is not None:
            daemon.pid = identity.pid
            daemon.uptime_s = round(time.time() - identity.create_time, 1)
            daemon.rss_bytes = _rss(process)
            daemon.health = await probe(health)
        state.daemons.append(daemon)
    return state


def _rss(process: Any) -> int | None:
    try:
        return int(process.memory_info().rss)
    except Exception:  # the process ended between two calls: no figure, not an error
        return None


# --- hero_proc ---


def hero_proc_spec(spec: DaemonSpec, settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name=spec.service,
        exec=shlex.join(spec.argv),
        env=spec.env,
        after=tuple(SERVICE_PREFIX + name for name in spec.after),
        shutdown_timeout=math.ceil(settings.stop_timeout_s),
        log="stdout",
    )


async def start_hero_proc(socket: Path, specs: list[DaemonSpec], settings: Settings) -> None:
    async with HeroProcClient(socket) as hero_proc:
        for spec in specs:
            service = hero_proc_spec(spec, settings)
            existing = await hero_proc.service_status(service.name)
            if existing is not None:  # left from an earlier start: replace its definition
                if existing.running:
                    await hero_proc.service_stop(service.name)
                await hero_proc.service_forget(service.name)
                await hero_proc.service_delete(service.name)
            await hero_proc.service_create(service)
            await hero_proc.service_monitor(service.name)
            try:
                await hero_proc.service_start(service.name)
            except HeroProcError as exc:
                if exc.code != -32002:  # IsUp: monitoring already started it
                    raise


async def stop_hero_proc(socket: Path) -> bool:
    stopped_any = False
    async with HeroProcClient(socket) as hero_proc:
        for name in reversed(DAEMON_NAMES):
            service = SERVICE_PREFIX + name
            status = await hero_proc.service_status(service)
            if status is None:
                continue
            if status.running:
                await hero_proc.service_stop(service)
                stopped_any = True
            await hero_proc.service_forget(service)
            await hero_proc.service_delete(service)
    return stopped_any


async def hero_proc_state(socket: Path | None, settings: Settings) -> ServiceState:
    if socket is None:
        return ServiceState(backend=None)
    try:
        async with HeroProcClient(socket) as hero_proc:
            statuses = {name: await hero_proc.service_status(SERVICE_PREFIX + name)
                        for name in DAEMON_NAMES}  # fmt: skip
    except HeroProcUnavailable:
        return ServiceState(backend=None)
    if not any(status is not None for status in statuses.values()):
        return ServiceState(backend=None)
    state = ServiceState(
        backend=HERO_PROC_BACKEND,
        sandbox=statuses["sandbox"] is not None,
        public_url=settings.public_url,
        admin_socket=str(settings.admin_socket_path),
    )
    specs = {spec.name: spec for spec in plan(settings, sandbox_keys=None)}
    for name, status in statuses.items():
        if status is None:
            continue
        daemon = DaemonState(name=name, state=status.state, pid=status.pid or None)
        identity = ProcessIdentity.of(status.pid) if status.pid else None
        if identity is not None:
            daemon.uptime_s = round(time.time() - identity.create_time, 1)
            daemon.rss_bytes = _rss(identity.process())
        health = specs[name].health if name in specs else Health(url=settings.sandbox_url)
        daemon.health = await probe(health) if status.running else "not running"
        state.daemons.append(daemon)
    return state


async def hero_proc_answers(socket: Path | None) -> bool:
    if socket is None:
        return False
    try:
        async with HeroProcClient(socket, timeout_s=2.0) as hero_proc:
            await hero_proc.ping()
    except (HeroProcUnavailable, HeroProcError):
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
    already = await current_state(settings, env)
    if already.running:
        return already, False
    socket = hero_proc_at(env)
    if backend == "auto":
        backend = HERO_PROC_BACKEND if await hero_proc_answers(socket) else BUILTIN
    elif backend == HERO_PROC_BACKEND and not await hero_proc_answers(socket):
        raise CommandFailed(f"--backend hero_proc: nothing answers on {socket}")
    sandbox_keys = load_or_create(settings.data_dir) if sandbox else None
    if sandbox_keys is None:
        await _check_secrets(settings, env, backend)
    specs = plan(settings, sandbox_keys=sandbox_keys, hero_proc_socket=socket)

    if backend == BUILTIN:
        supervisor = start_builtin(settings, sandbox=sandbox)
        answers = await wait_healthy(
            specs, settings.start_timeout_s, alive=lambda: supervisor.poll() is None
        )
    else:
        assert socket is not None  # hero_proc answered on it
        await start_hero_proc(socket, specs, settings)
        answers = await wait_healthy(specs, settings.start_timeout_s)
    if all(answer == "ok" for answer in answers.values()):
        return await current_state(settings, env), True

    failing = [name for name, answer in answers.items() if answer != "ok"]
    tails = _log_tails(settings, ["supervisor", *failing] if backend == BUILTIN else failing)
    await stop(settings, env)
    detail = ", ".join(f"{name}: {answers[name]}" for name in failing)
    raise CommandFailed(
        f"the service did not come up within {settings.start_timeout_s:g} s ({detail}); "
        f"stopped it again.{tails}"
    )


async def _check_secrets(settings: Settings, env: dict[str, str], backend: str) -> None:
    """Fail before starting anything when a daemon would not find its secrets."""
    lookup: SecretLookup = await look_up(env)
    server_secrets(lookup, provider=settings.provider)  # raises SecretsError naming it
    if backend != HERO_PROC_BACKEND:
        return
    # Under hero_proc the daemons are hero_proc's children, not ours: our environment never
    # reaches them, so what they need must be in hero_proc's secret store.
    for name, (_, source) in lookup.found.items():
        if source != HERO_PROC:
            raise SecretsError(
                f"{name} is only in this shell's environment; daemons run by hero_proc read "
                "secrets from its store: put it there, or use --backend builtin"
            )


def _log_tails(settings: Settings, names: list[str]) -> str:
    parts = []
    for name in names:
        path = settings.logs_dir / f"{name}.log"
        try:
            lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError:
            continue
        if lines:
            parts.append(f"\n--- last lines of {path} ---\n" + "\n".join(lines))
    return "".join(parts)


async def stop(settings: Settings, env: dict[str, str]) -> bool:
    """Stop whatever runs, under either backend; True if something did."""
    stopped = await stop_builtin(settings)
    socket = hero_proc_at(env)
    if socket is not None and await hero_proc_answers(socket):
        stopped = await stop_hero_proc(socket) or stopped
    return stopped


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)
