"""The words `--status` prints: which backend runs the service, and what state a daemon is in.

StrEnums, so `--status --json`, status.json and the text output carry exactly the strings they
always did ("builtin", "running", ...), while the code compares members, not spellings.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class BackendKind(StrEnum):
    """Who supervises the daemons."""

    HERO_PROC = "hero_proc"
    BUILTIN = "builtin"


AUTO: Final = "auto"  # --backend auto: hero_proc when its socket answers, else built-in
BACKEND_CHOICES: Final = (AUTO, *(kind.value for kind in BackendKind))  # --backend, in order


class ProcessState(StrEnum):
    """A daemon's state as the built-in supervisor records it, or as --status finds it.

    Under hero_proc, --status shows hero_proc's own word for a service that exists (Running,
    Error(..), ...), verbatim: only MISSING is ours there.
    """

    STARTING = "starting"  # spawned, not yet recorded as running
    RUNNING = "running"
    BACKOFF = "backoff"  # exited; waiting before the next start
    FAILED = "failed"  # exited too often: the supervisor stopped restarting it
    STOPPED = "stopped"  # the supervisor is stopping everything
    GONE = "gone"  # recorded as running, but no such process any more
    MISSING = "missing"  # hero_proc has no such service
    UNKNOWN = "unknown"  # the record does not say
