"""`--start`, `--stop`, `--restart`, `--status`: the whole service, under either backend.

`auto` runs under hero_proc when its socket answers, else under the built-in supervisor.
Stopping and reporting look at both, so they find the service however it was started.
`--start`, `--stop` and `--restart` hold `<data_dir>/run/control.lock` while they work, so two
of them at once take turns instead of undoing each other. What differs between the backends
lives in control/backends/.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from ..config import Settings
from .backends import Backend, Backends, Launch
from .daemons import plan
from .errors import CommandFailed
from .health import OK, wait_healthy
from .identity import LockHeld, waiting_for_lock
from .sandbox_keys import load_or_create
from .secrets import (
    HERO_PROC,
    SECRET_KEY,
    WEBHOOK_SIGNING_KEY,
    SecretsError,
    look_up,
    server_secrets,
)
from .service_state import DaemonState, ServiceState
from .states import BackendKind

__all__ = ["DaemonState", "ServiceState", "current_state", "restart", "start", "stop"]

CONTROL_LOCK: Final = "control.lock"
LOG_TAIL_LINES: Final = 12


@contextlib.asynccontextmanager
async def controlling(settings: Settings) -> AsyncIterator[None]:
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


async def current_state(settings: Settings, env: dict[str, str]) -> ServiceState:
    return await _state_of(Backends.of(settings, env))


async def _state_of(backends: Backends) -> ServiceState:
    """What runs under the first backend that runs anything."""
    for backend in backends.all():
        state = await backend.state()
        if state.running:
            return state
    return ServiceState(backend=None)


async def start(
    settings: Settings, env: dict[str, str], *, sandbox: bool, backend: BackendKind | None
) -> tuple[ServiceState, bool]:
    """Start everything and wait until each daemon answers /health; (state, newly started).

    `backend` None: hero_proc when it answers, else the built-in supervisor."""
    backends = Backends.of(settings, env)
    async with controlling(settings):
        already = await _state_of(backends)
        if already.running:
            return already, False
        return await _start(settings, env, backends, sandbox=sandbox, wanted=backend), True


async def _start(
    settings: Settings,
    env: dict[str, str],
    backends: Backends,
    *,
    sandbox: bool,
    wanted: BackendKind | None,
) -> ServiceState:
    """Choose the backend, check the secrets, launch, wait for /health; on any failure undo
    the launch and raise CommandFailed with the failing daemons' last log lines."""
    backend = await backends.choose(wanted)
    if sandbox:
        load_or_create(settings.data_dir)
    else:
        await _check_secrets(settings, env, backend)
    specs = plan(settings, sandbox=sandbox, hero_proc_socket=backends.hero_proc_socket)
    await backends.builtin.stop()  # daemons a killed supervisor may have left running

    launch = backend.launch(specs, sandbox=sandbox)
    try:
        await launch.begin()
        answers = await wait_healthy(
            specs, settings.start_timeout_s, launch.pids, alive=launch.alive
        )
    except BaseException:  # Ctrl-C, a hero_proc failure: leave nothing half-started
        await _undo(backends, launch)
        raise
    if all(answer == OK for answer in answers.values()):
        return await _state_of(backends)

    failing = [name for name, answer in answers.items() if answer != OK]
    why = launch.why_down() or f"not up within {settings.start_timeout_s:g} s"
    tails = _log_tails(settings, failing, launch.own_log())
    await _undo(backends, launch)
    detail = ", ".join(f"{name}: {answers[name]}" for name in failing)
    raise CommandFailed(f"the service did not come up: {why} ({detail}); stopped it.{tails}")


async def _undo(backends: Backends, launch: Launch) -> None:
    """Stop what this --start launched: its own part first, then whatever is recorded."""
    await launch.cancel()
    await _stop(backends)


async def _check_secrets(settings: Settings, env: dict[str, str], backend: Backend) -> None:
    """Fail before starting anything when a daemon would not find its secrets."""
    lookup = await look_up(env, sandbox_mode=settings.mode == "sandbox")
    needed = server_secrets(lookup, provider=settings.provider)  # raises SecretsError naming it
    if backend.passes_environment:
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


def _log_tails(settings: Settings, names: list[str], own_log: tuple[Path, int] | None) -> str:
    """The last lines of the failing daemons' logs (and what the supervisor wrote this time)."""
    parts = []
    sources = [(settings.logs_dir / f"{name}.log", 0) for name in names]
    if own_log is not None:
        sources.insert(0, own_log)
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
        return await _stop(Backends.of(settings, env))


async def _stop(backends: Backends) -> bool:
    stopped = False
    for backend in backends.all():  # each, even once one has stopped something
        stopped = await backend.stop() or stopped
    return stopped


async def restart(
    settings: Settings,
    env: dict[str, str],
    *,
    sandbox: bool | None,
    backend: BackendKind | None,
) -> ServiceState:
    """Stop, then start the way it ran (unless told otherwise): same mode, same backend."""
    backends = Backends.of(settings, env)
    async with controlling(settings):
        was = await _state_of(backends)
        await _stop(backends)
        return await _start(
            settings,
            env,
            backends,
            sandbox=was.sandbox if sandbox is None else sandbox,
            wanted=backend or was.backend,
        )
