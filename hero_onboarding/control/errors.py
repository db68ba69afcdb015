"""Exit codes, and the failures a command reports with them."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1  # the command ran and failed (a daemon could not start, ...)
EXIT_USAGE: Final = 2  # bad flags, invalid settings, missing secrets, no daemon: fix the setup
EXIT_NOT_RUNNING: Final = 3  # --status: nothing runs (the LSB init-script convention)


class CommandFailed(RuntimeError):
    """The message is the one line the CLI prints."""


class NothingToTalkTo(RuntimeError):
    """The daemon a command needs is not there (exit 2: start it, or point at it)."""
