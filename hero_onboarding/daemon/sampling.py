"""Letting one event per key per interval through, and saying how many were held back.

A flood of refused requests must cost neither a durable row nor a log line each, yet an
operator must still learn that it happened and how big it was. `RateGate.admit` answers
"let this one through?" and, when it does, how many it turned away since the last one, so the
one row or line that is written can carry the count. No timers: the count rides on the next
admitted event (exact totals belong in a metric; this is the human-readable sample).

Generic on purpose (keys are any hashable): the lead may merge it with the log limiter of
hero_onboarding/log_limits.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Final

# A gate remembers each key it saw; callers must key by short fixed sets (provider, reason),
# never by what a client sent. Past this many keys the oldest is forgotten.
MAX_KEYS: Final = 1024


@dataclass(frozen=True, slots=True)
class Admitted:
    """This event may be written; `held_back` others of its key were not since the last."""

    held_back: int
    since_s: float  # how long ago the previous admitted event of this key was (inf: never)


@dataclass
class RateGate:
    """At most one admitted event per key per `interval_s` (the first of each interval)."""

    interval_s: float
    clock: Callable[[], float] = time.monotonic
    _last: dict[Hashable, float] = field(default_factory=dict, init=False, repr=False)
    _held: dict[Hashable, int] = field(default_factory=dict, init=False, repr=False)

    def admit(self, key: Hashable = None) -> Admitted | None:
        """None: drop this one (it is counted). Otherwise write it, with the count."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        if last is None and len(self._last) >= MAX_KEYS:
            oldest = next(iter(self._last))
            del self._last[oldest]
            self._held.pop(oldest, None)
        self._last.pop(key, None)  # re-insert: dict order is then oldest-admitted first
        self._last[key] = now
        return Admitted(self._held.pop(key, 0), float("inf") if last is None else now - last)
