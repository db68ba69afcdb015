"""Failures a command reports with exit code 1 (it ran, and what it did failed)."""

from __future__ import annotations


class CommandFailed(RuntimeError):
    """The message is the one line the CLI prints."""


class NothingToTalkTo(RuntimeError):
    """The daemon a command needs is not there (exit 2: start it, or point at it)."""
