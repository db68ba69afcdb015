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

_SESSION_FIXTURE = json.loads(
    (Path(__file__).parent / "fixtures" / "checkout_session.json").read_text()
)
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


def charge_refunded(
    *, payment_intent: str, amount: int, amount_refunded: int, currency: str = "usd"
) -> dict[str, Any]:
    charge = {
        "id": new_id("ch"),
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "captured": True,
        "currency": currency,
        "livemode": False,
        "metadata": {},
        "paid": True,
        "payment_intent": payment_intent,
        "refunded": amount_refunded == amount,
        "status": "succeeded",
    }
    return event("charge.refunded", charge)


def body_of(evt: dict[str, Any]) -> str:
    """Serialised as Stripe does: pretty-printed JSON (whitespace is part of what is signed)."""
    return json.dumps(evt, indent=2)
