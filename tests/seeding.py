"""Checkouts as the service records them when it opens one, for tests and bench scripts that
deliver Stripe events for payments they make up: only checkouts we opened are ever credited."""

from __future__ import annotations

import time
from collections.abc import Iterable

import apsw

from hero_onboarding.store import checkouts
from hero_onboarding.store.checkouts import CheckoutSession, CheckoutStatus


def checkout(
    sid: str, checkout_id: str, amount: int, *, currency: str = "usd", provider: str = "stripe"
) -> CheckoutSession:
    return CheckoutSession(
        id=checkout_id,
        sid=sid,
        provider=provider,
        amount=amount,
        currency=currency,
        status=CheckoutStatus.OPEN,
        url="https://checkout.example/" + checkout_id,
        created_at=int(time.time()),
    )


def insert_checkouts(conn: apsw.Connection, opened: Iterable[CheckoutSession]) -> None:
    """Many at once, in the caller's transaction (one fsync for thousands)."""
    for row in opened:
        checkouts.insert(conn, row)
