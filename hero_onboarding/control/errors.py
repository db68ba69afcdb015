"""Exit codes, and the failures a command reports with them (the tree is in ..errors)."""

from __future__ import annotations

from typing import Final

from ..errors import EXIT_FAILURE, EXIT_USAGE, CommandError, SetupError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_NOT_RUNNING",
    "EXIT_OK",
    "EXIT_USAGE",
    "CommandFailed",
    "NothingToTalkTo",
]

EXIT_OK: Final = 0
# EXIT_FAILURE (1): the command ran and failed (a daemon could not start, ...)
# EXIT_USAGE (2): bad flags, invalid settings, missing secrets, no daemon: fix the setup
EXIT_NOT_RUNNING: Final = 3  # --status: nothing runs (the LSB init-script convention)


class CommandFailed(CommandError, RuntimeError):
    """The message is the one line the CLI prints (exit 1)."""


class NothingToTalkTo(SetupError, RuntimeError):
    """The daemon a command needs is not there (exit 2: start it, or point at it)."""
