"""The dashboard's checkout nonce: a form sent twice is one checkout, with one expiry.

A nonce is `<issued_at>.<random>`, put in the form when the dashboard is rendered. The
idempotency key holds it, and the checkout's `expires_at` is derived from `issued_at`, so the
same form sent again (a double click, the back button) asks the provider for exactly the same
thing, and the provider answers with the checkout it opened the first time. A nonce is reused
only while the checkout it implies can still be opened: Stripe wants 30 minutes of life left.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Final

PATTERN: Final = re.compile(r"(\d{1,12})\.([A-Za-z0-9_-]{16,64})")


@dataclass(frozen=True, slots=True)
class FormNonce:
    value: str
    issued_at: int


def issue(now: int) -> str:
    return f"{now}.{secrets.token_urlsafe(18)}"


def accept(sent: object, *, now: int, reusable_for_s: int) -> FormNonce:
    """The nonce a form sent if well-formed and young enough to reuse; else a new one.

    A new one (a stale form, an API caller without our form) simply opens a new checkout.
    """
    if isinstance(sent, str) and (found := PATTERN.fullmatch(sent)):
        issued_at = int(found.group(1))
        if now - reusable_for_s <= issued_at <= now:
            return FormNonce(sent, issued_at)
    return FormNonce(issue(now), now)
