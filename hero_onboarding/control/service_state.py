"""What `--status` reports: the whole service and each of its daemons, under either backend."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .health import OK
from .identity import ProcessIdentity
from .states import BackendKind


@dataclass
class DaemonState:
    name: str
    state: str  # a ProcessState, or hero_proc's own word (see ProcessState)
    pid: int | None = None
    uptime_s: float | None = None
    rss_bytes: int | None = None
    restarts: int = 0
    health: str = "not checked"
    note: str = ""

    def measure(self, identity: ProcessIdentity) -> None:
        """Uptime and RSS of the live process `identity` names."""
        self.uptime_s = round(time.time() - identity.create_time, 1)
        self.rss_bytes = _rss(identity)


@dataclass
class ServiceState:
    backend: BackendKind | None  # None: not running anywhere
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


def _rss(identity: ProcessIdentity) -> int | None:
    process = identity.process()
    try:
        return int(process.memory_info().rss) if process else None
    except Exception:  # the process ended between two calls: no figure, not an error
        return None
