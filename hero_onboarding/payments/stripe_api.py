"""What this service expects of Stripe's API: the version it speaks and the events it acts on.

One place, read by the client (which pins the version instead of inheriting the SDK's), by
`hero-onboarding stripe-setup` (which subscribes the account's endpoint to exactly these types,
rendered in exactly this version) and by the README's `stripe listen --events` line.
"""

from __future__ import annotations

from typing import Final

# Pinned explicitly rather than inherited from whatever SDK is installed: the version the SDK
# (stripe 16.x) was generated for, so the objects it parses and the ones we ask for agree. A test
# fails when an SDK upgrade moves its own version, so the change is made on purpose.
API_VERSION: Final = "2026-10-28.endive"

CHECKOUT_EVENT_TYPES: Final = (
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
)
REFUND_EVENT_TYPES: Final = (
    "charge.refunded",  # the charge, with its running total refunded
    "refund.created",
    "refund.updated",
    "refund.failed",
    "charge.refund.updated",  # the older name of refund.updated, still sent
)
DISPUTE_EVENT_TYPES: Final = (
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
)
HANDLED_EVENT_TYPES: Final = CHECKOUT_EVENT_TYPES + REFUND_EVENT_TYPES + DISPUTE_EVENT_TYPES
