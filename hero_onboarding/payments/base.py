"""What every payment provider offers, and the normalised event the ledger understands.

billing.fulfil() sees only ProviderEvent, so Stripe, ClickPesa and the stub differ only here.
A provider's module builds its parts (`ProviderParts`) from Settings and Secrets; the daemons
get them through payments/providers.py and never name a provider's classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol

from aiohttp import web

from ..errors import InputError, UnavailableError

# No provider reports a single amount this large (Stripe allows 8 digits, 12 for a few
# currencies); refusing more keeps every balance far from SQLite's 64-bit limit.
MAX_AMOUNT: Final = 10**12


class EventKind(StrEnum):
    """What a report means for the ledger.

    The reversals (REFUNDED, REFUND_FAILED, DISPUTED, DISPUTE_WON) name the payment they
    reverse in `external_ref`; with `reversal_id` set they are about one refund or dispute and
    `amount` is its amount, else (REFUNDED only) `amount` is the payment's running total
    refunded. They may arrive before the payment itself: billing keeps them until it is credited.
    """

    PAID = "paid"  # money received: credit `amount` once per payment
    PENDING = "pending"  # buyer finished, a delayed payment method is still settling
    FAILED = "failed"  # the delayed payment failed
    EXPIRED = "expired"  # the checkout can no longer be paid
    REFUNDED = "refunded"  # a refund that takes money back (pending or succeeded)
    REFUND_FAILED = "refund_failed"  # a refund that failed or was canceled: the money stays ours
    DISPUTED = "disputed"  # a dispute holds `amount` (open, or lost)
    DISPUTE_WON = "dispute_won"  # a dispute closed in our favour: nothing is held any more
    UNKNOWN = "unknown"  # about money, but in a state we do not know (`note`): a person must look
    IGNORED = "ignored"  # verified, but nothing for us to do (`note` says why)


REVERSAL_KINDS: Final = frozenset({
    EventKind.REFUNDED, EventKind.REFUND_FAILED, EventKind.DISPUTED, EventKind.DISPUTE_WON
})  # fmt: skip


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """A provider's report, reduced to what fulfilment needs.

    `external_ref` names the payment (Stripe: the payment_intent id) and is what makes credits
    unique; `amount` is always the provider's figure, never one a browser sent. `sid` is the user
    the provider's object names; `conflicting_sid` is set when a second reference in the same
    object names another (a session whose client_reference_id and metadata disagree), which no
    checkout of ours ever does. `parts` are further reports carried by the same object (the
    refunds listed on a charge), applied with it.
    """

    provider: str
    kind: EventKind
    event_id: str
    raw_type: str
    checkout_id: str | None = None
    external_ref: str | None = None
    amount: int | None = None
    currency: str | None = None
    sid: str | None = None
    livemode: bool | None = None
    note: str = ""
    conflicting_sid: str | None = None
    reversal_id: str | None = None  # the refund or dispute (re_..., dp_...) a reversal is about
    status: str | None = None  # the provider's own word for that refund's or dispute's state
    parts: tuple[ProviderEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    """What we ask a provider to charge one user, and where the buyer comes back to.

    `success_url` may hold `{CHECKOUT_SESSION_ID}`, which the provider replaces with the id.
    `idempotency_key` makes a retried or double-submitted request one checkout, not two.
    """

    sid: str
    address: str
    amount: int
    currency: str
    success_url: str
    cancel_url: str
    expires_at: int
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Checkout:
    """A hosted payment page the buyer is sent to."""

    id: str
    url: str
    expires_at: int | None


class InvalidSignature(InputError, ValueError, http_status=401):
    """The webhook is not provably from the provider (missing, wrong or stale signature)."""


class InvalidPayload(InputError, ValueError, http_status=400):
    """The webhook is signed but its body is not an event we can read."""


class ProviderError(UnavailableError, RuntimeError, http_status=502, rpc_code=-32013):
    """The provider could not be asked (down, refused our key); the message is safe to show."""


class Reconciler(Protocol):
    """What reconciliation needs: what the provider says happened to money since a time."""

    name: str

    async def settled_since(self, since: int) -> list[ProviderEvent]:
        """Paid checkouts created at or after `since` (unix seconds), then what happened to
        payments since then (refunds, refund failures, disputes), oldest first.

        Order does not matter to billing (a reversal before its purchase is kept until the
        purchase is credited), but purchases first keeps the audit readable. What cannot be
        read is an IGNORED event whose note says why, so one odd object never hides the rest.
        """
        ...


class WebhookParser(Protocol):
    """The part of a provider the webhook endpoint needs."""

    name: str

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        """Verify and normalise one delivery; raise InvalidSignature or InvalidPayload."""
        ...


class PageHost(Protocol):
    """What the public daemon lends a provider that serves pages of its own (the stub's pay
    button; ClickPesa's phone form): who is logged in, its templates, and fulfilment. So a
    provider's pages live in its module while payments/ never imports the daemon."""

    async def buyer(self, request: web.Request) -> str:
        """The logged-in visitor's sid; a visitor without a session is sent to log in."""
        ...

    async def render(
        self, request: web.Request, template: str, **context: Any
    ) -> web.StreamResponse:
        """One of the daemon's templates, with its CSRF token and chrome."""
        ...

    async def not_found(self, request: web.Request, title: str, message: str) -> web.StreamResponse:
        """A 404 page that says what is gone and links back to the dashboard."""
        ...

    async def fulfil(self, request: web.Request, event: ProviderEvent) -> str:
        """Apply what the provider reports, exactly as its webhook would; the outcome's name."""
        ...


class PaymentProvider(Protocol):
    """Creates hosted checkouts and reports on them (webhooks are a WebhookParser's job).

    A provider is owned by the daemon that made it (through payments/providers.py), which
    calls `close` on the way out.
    """

    name: str

    def routes(self, host: PageHost) -> Sequence[web.AbstractRouteDef]:
        """Pages of its own the public daemon serves while it sells through this provider
        (none for Stripe, whose page is its own site)."""
        ...

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        """Open a hosted checkout; raises ProviderError when the provider cannot be asked."""
        ...

    async def retrieve_checkout(self, checkout_id: str) -> ProviderEvent | None:
        """What the provider says about a checkout now, read as the webhook announcing it.

        None while nothing has happened yet (the buyer has not paid, nor has it expired).
        Raises ProviderError when the provider cannot be asked.
        """
        ...

    async def close(self) -> None: ...


class Closable(Protocol):
    async def close(self) -> None: ...


@dataclass(frozen=True)
class ProviderParts:
    """What one provider contributes to a daemon, each part None where it cannot be built.

    `checkouts` sells (the public daemon uses the one --provider names); `webhooks` is served
    at /webhooks/{name}; `reconciler` is the admin daemon's. One object may fill several parts
    (Stripe's client both sells and reconciles); `owned` lists what must be closed, once.
    `missing` says why `checkouts` is None, for the StartupError when it is the one selected.
    """

    checkouts: PaymentProvider | None = None
    webhooks: WebhookParser | None = None
    reconciler: Reconciler | None = None
    owned: tuple[Closable, ...] = ()
    missing: str = ""
