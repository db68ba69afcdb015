"""Remembering when we last asked the provider about a checkout, so a page cannot hammer it.

The return page asks Stripe about a checkout that is not complete yet; it refreshes itself, and
a person may reload it. Asking at most once per interval per checkout keeps a few open tabs from
spending the account's API rate limit, which the whole service shares.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

MAX_REMEMBERED: Final = 10_000


class RecentAsks:
    """At most one ask per key per `interval_s`; memory bounded by forgetting the oldest."""

    def __init__(self, interval_s: float, *, limit: int = MAX_REMEMBERED) -> None:
        self._interval_s = interval_s
        self._limit = limit
        self._last: OrderedDict[str, float] = OrderedDict()

    def may_ask(self, key: str, now: float) -> bool:
        """True, and remembers `now`, if `key` was not asked about in the last interval."""
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            return False
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > self._limit:
            self._last.popitem(last=False)
        return True
