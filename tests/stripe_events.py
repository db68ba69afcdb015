"""Stripe-shaped events and signatures for tests, made the way Stripe makes them.

The signer is written here from Stripe's documented scheme (HMAC-SHA256 over "<t>.<body>",
hex, in `t=...,v1=...`), independently of the SDK code under test.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any

_FIXTURES = Path(__file__).parent / "fixtures"
_SESSION_FIXTURE = json.loads((_FIXTURES / "checkout_session.json").read_text())
# Stripe's own example objects (stripe/openapi fixtures3.json), filled in with our values.
_CHARGE_FIXTURE = json.loads((_FIXTURES / "stripe_charge.json").read_text())
_REFUND_FIXTURE = json.loads((_FIXTURES / "stripe_refund.json").read_text())
_DISPUTE_FIXTURE = json.loads((_FIXTURES / "stripe_dispute.json").read_text())
API_VERSION = "2026-10-28.endive"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def signature(body: str, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()


def sign(body: str, *secrets_: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header with one v1 entry per secret (Stripe's rotation overlap)."""
    t = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={t}", *(f"v1={signature(body, s, t)}" for s in secrets_)])


def event(
    event_type: str, obj: dict[str, Any], *, event_id: str | None = None, livemode: bool = False
) -> dict[str, Any]:
    return {
        "id": event_id or new_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": new_id("req"), "idempotency_key": None},
        "type": event_type,
    }


def checkout_session(
    *,
    sid: str | None,
    amount: int,
    payment_intent: str | None,
    payment_status: str = "paid",
    status: str = "complete",
    session_id: str | None = None,
    currency: str = "usd",
) -> dict[str, Any]:
    """A Checkout Session as Stripe renders it in checkout.session.* events."""
    session = copy.deepcopy(_SESSION_FIXTURE)
    session_id = session_id or "cs_test_" + secrets.token_hex(29)
    session.update(
        id=session_id,
        amount_subtotal=amount,
        amount_total=amount,
        currency=currency,
        client_reference_id=sid,
        metadata={"sid": sid} if sid else {},
        payment_intent=payment_intent,
        payment_status=payment_status,
        status=status,
        url=None,
        created=int(time.time()) - 60,
        expires_at=int(time.time()) + 3600,
    )
    return session


def checkout_event(event_type: str, **session_kwargs: Any) -> dict[str, Any]:
    return event(event_type, checkout_session(**session_kwargs))


def charge(
    *,
    payment_intent: str,
    amount: int,
    amount_refunded: int = 0,
    currency: str = "usd",
    refunds: list[dict[str, Any]] | None = None,
    charge_id: str | None = None,
) -> dict[str, Any]:
    """A succeeded card charge; `refunds` None leaves the list out, as API versions since
    2022-11-15 do in events."""
    obj = copy.deepcopy(_CHARGE_FIXTURE)
    charge_id = charge_id or new_id("ch")
    obj.update(
        id=charge_id,
        amount=amount,
        amount_captured=amount,
        amount_refunded=amount_refunded,
        currency=currency,
        payment_intent=payment_intent,
        refunded=amount_refunded == amount,
        created=int(time.time()) - 60,
    )
    if refunds is None:
        del obj["refunds"]
    else:
        obj["refunds"] = {
            "object": "list",
            "data": refunds,
            "has_more": False,
            "url": f"/v1/charges/{charge_id}/refunds",
        }
    return obj


def charge_refunded(
    *, payment_intent: str, amount: int, amount_refunded: int, currency: str = "usd", **kwargs: Any
) -> dict[str, Any]:
    return event(
        "charge.refunded",
        charge(
            payment_intent=payment_intent,
            amount=amount,
            amount_refunded=amount_refunded,
            currency=currency,
            **kwargs,
        ),
    )


def refund(
    *,
    payment_intent: str | None,
    amount: int,
    status: str = "succeeded",
    refund_id: str | None = None,
    charge_id: str | None = None,
    currency: str = "usd",
) -> dict[str, Any]:
    obj = copy.deepcopy(_REFUND_FIXTURE)
    obj.update(
        id=refund_id or new_id("re"),
        amount=amount,
        charge=charge_id or new_id("ch"),
        currency=currency,
        payment_intent=payment_intent,
        status=status,
        created=int(time.time()),
    )
    if status == "failed":
        obj["failure_reason"] = "expired_or_canceled_card"
    return obj


def refund_event(event_type: str, **refund_kwargs: Any) -> dict[str, Any]:
    """refund.created / refund.updated / refund.failed / charge.refund.updated."""
    return event(event_type, refund(**refund_kwargs))


def dispute(
    *,
    payment_intent: str | None,
    amount: int,
    status: str = "needs_response",
    dispute_id: str | None = None,
    charge_id: str | None = None,
    currency: str = "usd",
) -> dict[str, Any]:
    obj = copy.deepcopy(_DISPUTE_FIXTURE)
    obj.update(
        id=dispute_id or new_id("dp"),
        amount=amount,
        charge=charge_id or new_id("ch"),
        currency=currency,
        payment_intent=payment_intent,
        status=status,
        reason="fraudulent",
        created=int(time.time()),
    )
    return obj


def dispute_event(event_type: str, **dispute_kwargs: Any) -> dict[str, Any]:
    """charge.dispute.created / .updated / .closed / .funds_withdrawn / .funds_reinstated."""
    return event(event_type, dispute(**dispute_kwargs))


def body_of(evt: dict[str, Any]) -> str:
    """Serialised as Stripe does: pretty-printed JSON (whitespace is part of what is signed)."""
    return json.dumps(evt, indent=2)
