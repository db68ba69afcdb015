"""hero_proc as a backend: each daemon a service it runs, driven through its RPC socket.

zinit's vocabulary: a service is created (its definition stored), monitored (hero_proc takes
charge of it), started, stopped, forgotten and deleted. Stopping only asks; the waiting (and
the SIGKILL when it does not stop in time) is ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from ...config import Settings
from ...rpc.hero_proc import (
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
from ..daemons import ALL_DAEMONS, DaemonSpec, plan, service_name
from ..errors import CommandFailed
from ..health import probe_process
from ..identity import ProcessIdentity
from ..service_state import DaemonState, ServiceState
from ..states import BackendKind, ProcessState

log = logging.getLogger(__name__)

STOP_POLL_S: Final = 0.1
PING_TIMEOUT_S: Final = 2.0


class HeroProcBackend:
    kind = BackendKind.HERO_PROC
    passes_environment = False  # hero_proc's children, not ours: our environment is not theirs

    def __init__(self, settings: Settings, socket: Path | None) -> None:
        self._settings = settings
        self.socket = socket

    async def available(self) -> bool:
        """Whether hero_proc is there to use. One that is there but failing is said once."""
        if self.socket is None:
            return False
        try:
            async with HeroProcClient(self.socket, timeout_s=PING_TIMEOUT_S) as hero_proc:
                await hero_proc.ping()
        except HeroProcUnavailable:
            return False
        except HeroProcError as exc:
            log.warning("hero_proc at %s is there but failing (%s); not using it", self.socket, exc)
            return False
        return True

    def unavailable_because(self) -> str:
        return f"nothing answers at {self.socket or 'nowhere (HERO_PROC_SOCKET is empty)'}"

    def launch(self, specs: list[DaemonSpec], *, sandbox: bool) -> HeroProcLaunch:
        assert self.socket is not None  # available() said yes
        return HeroProcLaunch(self, self.socket, specs, self._settings)

    async def stop(self) -> bool:
        """Stop every service at once; one that fails does not keep the others running."""
        if self.socket is None or not await self.available():
            return False
        settings = self._settings
        async with HeroProcClient(self.socket) as hero_proc:
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
            log.warning(
                "hero_proc at %s has no service methods we know: %s", self.socket, failures[0]
            )
            return False
        if failures:
            raise CommandFailed(
                "hero_proc could not stop the service: " + "; ".join(str(f) for f in failures)
            )
        return any(results)

    async def state(self) -> ServiceState:
        if self.socket is None:
            return ServiceState(backend=None)
        try:
            statuses = await self.statuses()
        except HeroProcUnavailable:
            return ServiceState(backend=None)
        except HeroProcError as exc:  # its API differs from what we assume: say so, do not fail
            log.warning("hero_proc at %s did not report on our services: %s", self.socket, exc)
            return ServiceState(backend=None)
        if not any(status is not None for status in statuses.values()):
            return ServiceState(backend=None)
        settings = self._settings
        sandbox = statuses["sandbox"] is not None
        state = ServiceState(
            backend=self.kind,
            sandbox=sandbox,
            public_url=settings.public_url,
            admin_socket=str(settings.admin_socket_path),
        )
        for spec in plan(settings, sandbox=sandbox):
            state.daemons.append(await _daemon_state(spec, statuses[spec.name]))
        return state

    async def statuses(self) -> dict[str, ServiceStatus | None]:
        """hero_proc's status of each of our services (None: it has no such service)."""
        assert self.socket is not None
        async with HeroProcClient(self.socket) as hero_proc:
            return {
                daemon: await hero_proc.service_status(service_name(self._settings, daemon))
                for daemon in ALL_DAEMONS
            }


class HeroProcLaunch:
    """Services this --start creates; hero_proc runs them (their logs are the daemons')."""

    def __init__(
        self,
        backend: HeroProcBackend,
        socket: Path,
        specs: list[DaemonSpec],
        settings: Settings,
    ) -> None:
        self._backend, self._socket, self._specs, self._settings = backend, socket, specs, settings

    async def begin(self) -> None:
        """Create, monitor and start each service; on any failure remove what this call made."""
        settings = self._settings
        async with HeroProcClient(self._socket) as hero_proc:
            made: list[str] = []
            try:
                for spec in self._specs:
                    await _remove_service(hero_proc, spec.service, settings)  # a leftover
                    await hero_proc.service_create(service_spec(spec, settings))
                    made.append(spec.service)
                    await hero_proc.service_monitor(spec.service)
                    with _tolerating(IS_UP):  # monitoring may have started it already
                        await hero_proc.service_start(spec.service)
            except (HeroProcError, HeroProcUnavailable) as exc:
                for name in reversed(made):
                    with contextlib.suppress(HeroProcError, HeroProcUnavailable):
                        await _remove_service(hero_proc, name, settings)
                raise CommandFailed(f"hero_proc could not start the service: {exc}") from None

    async def pids(self) -> dict[str, int | None]:
        statuses = await self._backend.statuses()
        return {name: status.pid if status else None for name, status in statuses.items()}

    def alive(self) -> bool:
        return True  # hero_proc keeps restarting them; only the deadline ends the wait

    def why_down(self) -> str | None:
        return None

    def own_log(self) -> tuple[Path, int] | None:
        return None

    async def cancel(self) -> None:
        """Nothing of ours but the services, which a stop removes."""


def service_spec(spec: DaemonSpec, settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        name=spec.service,
        exec=shlex.join(spec.argv),
        env=spec.env,
        after=spec.after,
        shutdown_timeout=math.ceil(settings.stop_timeout_s),
        log="stdout",
    )


async def _daemon_state(spec: DaemonSpec, status: ServiceStatus | None) -> DaemonState:
    if status is None:
        return DaemonState(name=spec.name, state=ProcessState.MISSING, health="no service")
    daemon = DaemonState(name=spec.name, state=status.state, pid=status.pid or None)
    identity = ProcessIdentity.of(status.pid) if status.pid else None
    if identity is not None:
        daemon.measure(identity)
    daemon.health = (
        await probe_process(spec.health, status.pid) if status.running else "not running"
    )
    return daemon


async def _remove_service(hero_proc: HeroProcClient, name: str, settings: Settings) -> bool:
    """Stop (waiting until its process is gone, killing it if it must), forget and delete a
    service; True if it was running."""
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
def _tolerating(*codes: int) -> Iterator[None]:
    try:
        yield
    except HeroProcError as exc:
        if exc.code not in codes:
            raise
