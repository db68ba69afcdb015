"""What a supervisor backend does for --start, --stop and --status."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..daemons import DaemonSpec
from ..service_state import ServiceState
from ..states import BackendKind


class Launch(Protocol):
    """One --start's attempt to bring the daemons up, from `begin` until healthy or undone."""

    async def begin(self) -> None:
        """Hand the daemons to the backend; raises if it refuses (having undone its part)."""

    async def pids(self) -> dict[str, int | None]:
        """The pid each daemon runs as now, as the backend knows it (None: not running)."""

    def alive(self) -> bool:
        """False once the daemons can no longer come up (the supervisor died, gave up)."""

    def why_down(self) -> str | None:
        """Why they did not come up, when the backend knows; None: they were too slow."""

    def own_log(self) -> tuple[Path, int] | None:
        """The backend's own log and where this launch's part of it starts, if it has one."""

    async def cancel(self) -> None:
        """Stop what `begin` made that a plain stop would not find (an unrecorded child)."""


class Backend(Protocol):
    @property
    def kind(self) -> BackendKind: ...

    @property
    def passes_environment(self) -> bool:
        """Whether the daemons inherit this process's environment: if not (hero_proc starts
        them), the secrets they need must be in hero_proc's store."""

    async def available(self) -> bool:
        """Whether it can run the service here now."""

    def unavailable_because(self) -> str:
        """Why `available()` said no, for the one-line error."""

    async def state(self) -> ServiceState:
        """What runs under it (backend None: nothing)."""

    def launch(self, specs: list[DaemonSpec], *, sandbox: bool) -> Launch:
        """A launch of `specs`, not yet begun."""

    async def stop(self) -> bool:
        """Stop everything of ours it runs, waiting until the processes are gone; True if
        anything ran."""
