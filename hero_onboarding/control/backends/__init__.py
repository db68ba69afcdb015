"""The two supervisors the service can run under, behind one `Backend` protocol.

`Backends.of(settings, env)` builds both once; `choose` picks the one a --start uses. Nothing
else in control/ asks which one it holds: what differs is a method or an attribute of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...config import Settings
from ..errors import CommandFailed
from ..secrets import hero_proc_at
from ..states import BackendKind
from .base import Backend, Launch
from .builtin import BuiltinBackend
from .hero_proc import HeroProcBackend

__all__ = ["Backend", "Backends", "BuiltinBackend", "HeroProcBackend", "Launch"]


@dataclass(frozen=True)
class Backends:
    builtin: BuiltinBackend
    hero_proc: HeroProcBackend

    @classmethod
    def of(cls, settings: Settings, env: dict[str, str]) -> Backends:
        return cls(BuiltinBackend(settings), HeroProcBackend(settings, hero_proc_at(env)))

    @property
    def hero_proc_socket(self) -> Path | None:
        return self.hero_proc.socket

    def all(self) -> tuple[Backend, ...]:
        """Both, the built-in first: it is asked about without any RPC."""
        return (self.builtin, self.hero_proc)

    async def choose(self, wanted: BackendKind | None) -> Backend:
        """`wanted`, if it can be used (else CommandFailed saying why); None: hero_proc when
        it answers, else the built-in supervisor."""
        if wanted is None:
            return self.hero_proc if await self.hero_proc.available() else self.builtin
        chosen = next(backend for backend in self.all() if backend.kind == wanted)
        if not await chosen.available():
            raise CommandFailed(f"--backend {wanted}: {chosen.unavailable_because()}")
        return chosen
