"""A payment provider with no network, for running the service without Stripe at all.

Its hosted page is one the public daemon serves for it (/payment/stub/<id>, stub_page.py);
paying there turns into the same PAID ProviderEvent a Stripe webhook would, and goes through
billing.fulfil. It keeps its checkouts in memory: a restart forgets the unpaid ones, while what
was paid is in the ledger like any other payment.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from ..config import ProviderName, Secrets, Settings
from .base import (
    Checkout,
    CheckoutRequest,
    EventKind,
    PageHost,
    ProviderError,
    ProviderEvent,
    ProviderParts,
)
from .stub_page import PAGE_PATH, page_routes

PROVIDER: Final = "stub"
MAX_OPEN: Final = 10_000  # memory bound: unpaid stub checkouts held at once
SESSION_ID_TEMPLATE: Final = "{CHECKOUT_SESSION_ID}"


@dataclass
class StubCheckout:
    id: str
    request: CheckoutRequest
    paid: bool = False

    @property
    def success_url(self) -> str:
        return self.request.success_url.replace(SESSION_ID_TEMPLATE, self.id)


class StubCheckouts:
    """Checkouts that a button on our own page pays (provider=stub)."""

    name: str = PROVIDER

    def __init__(self, public_url: str, *, clock: Callable[[], float] = time.time) -> None:
        self._public_url = public_url.rstrip("/")
        self._clock = clock
        self._checkouts: dict[str, StubCheckout] = {}
        self._by_key: dict[str, str] = {}

    async def close(self) -> None:
        self._checkouts.clear()
        self._by_key.clear()

    def routes(self, host: PageHost) -> Sequence[web.AbstractRouteDef]:
        return page_routes(self, host)

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        self._forget_expired()
        known = self._by_key.get(request.idempotency_key)
        if known is not None:
            if self._checkouts[known].request != request:
                raise ProviderError("idempotency key reused with different parameters")
            return self._as_checkout(self._checkouts[known])
        if len(self._checkouts) >= MAX_OPEN:
            raise ProviderError(f"the stub holds {MAX_OPEN} unpaid checkouts already")
        checkout = StubCheckout("stub_cs_" + secrets.token_urlsafe(24), request)
        self._checkouts[checkout.id] = checkout
        self._by_key[request.idempotency_key] = checkout.id
        return self._as_checkout(checkout)

    async def retrieve_checkout(self, checkout_id: str) -> ProviderEvent | None:
        checkout = self._checkouts.get(checkout_id)
        if checkout is None or checkout.paid:
            # Paid: the page fulfilled it already. Unknown: forgotten in a restart, or expired.
            return self._paid_event(checkout) if checkout else None
        if self._expired(checkout):
            return ProviderEvent(
                provider=PROVIDER,
                kind=EventKind.EXPIRED,
                event_id=f"stub:{checkout.id}:expired",
                raw_type="stub.checkout.expired",
                checkout_id=checkout.id,
                sid=checkout.request.sid,
            )
        return None

    def find(self, checkout_id: str) -> StubCheckout | None:
        """An unpaid, unexpired checkout the page may still pay."""
        checkout = self._checkouts.get(checkout_id)
        if checkout is None or checkout.paid or self._expired(checkout):
            return None
        return checkout

    def pay(self, checkout: StubCheckout) -> ProviderEvent:
        """Mark it paid and report it as the provider would (the caller fulfils it)."""
        checkout.paid = True
        return self._paid_event(checkout)

    def _paid_event(self, checkout: StubCheckout) -> ProviderEvent:
        return ProviderEvent(
            provider=PROVIDER,
            kind=EventKind.PAID,
            event_id=f"stub:{checkout.id}",
            raw_type="stub.checkout.paid",
            checkout_id=checkout.id,
            external_ref=checkout.id,
            amount=checkout.request.amount,
            currency=checkout.request.currency,
            sid=checkout.request.sid,
        )

    def _as_checkout(self, checkout: StubCheckout) -> Checkout:
        return Checkout(
            id=checkout.id,
            url=f"{self._public_url}{PAGE_PATH}{checkout.id}",
            expires_at=checkout.request.expires_at,
        )

    def _expired(self, checkout: StubCheckout) -> bool:
        return self._clock() >= checkout.request.expires_at

    def _forget_expired(self) -> None:
        """Keep memory bounded by what is still payable (paid ones are in the ledger)."""
        gone = [c for c in self._checkouts.values() if self._expired(c)]
        for checkout in gone:
            del self._checkouts[checkout.id]
            self._by_key.pop(checkout.request.idempotency_key, None)


def parts(settings: Settings, secrets: Secrets) -> ProviderParts:
    """The stub exists only while --provider=stub names it (load_settings allows that only in
    sandbox mode): it needs no credentials, receives no webhooks, has nothing to reconcile."""
    if settings.provider != ProviderName.STUB:
        return ProviderParts(missing="--provider=stub is not selected")
    stub = StubCheckouts(settings.public_url)
    return ProviderParts(checkouts=stub, owned=(stub,))
