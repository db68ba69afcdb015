"""Two small types every layer may use: a credential that never prints, and a startup failure.

They lived in config.py, which made everything that holds a key or refuses to start depend on
the settings module. This module imports only errors.py, a leaf too (tests/test_layers.py), so
the sandbox, payments, rpc and control can all use it without reaching into each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import CommandError


class StartupError(CommandError, RuntimeError):
    """A daemon cannot start as configured (port taken, database unusable); says which and why."""


@dataclass(frozen=True, repr=False)
class Secret:
    """A credential. Its repr and str never show the value; only `reveal()` does."""

    _value: str

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__
