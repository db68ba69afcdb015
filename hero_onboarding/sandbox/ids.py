"""Stripe-shaped object ids: a prefix and random base62 characters."""

from __future__ import annotations

import secrets
import string
from typing import Final

_ALPHABET: Final = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    """`new_id("pi_")` -> `pi_3Q...`; checkout sessions use 58 characters as Stripe does."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def session_id() -> str:
    return new_id("cs_test_", 58)
