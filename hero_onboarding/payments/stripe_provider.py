"""Stripe: webhook verification and normalisation (Checkout Sessions, refunds, disputes).

The signature is checked with the SDK's `stripe.WebhookSignature.verify_header`; the body is then
read with `json`, not `stripe.Webhook.construct_event`, whose StripeObject tree costs ~50x the
check itself (DESIGN.md, Payments) and would cap the webhook endpoint on one core.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import stripe
from aiohttp import web

from ..config import Secrets, Settings
from ..primitives import Secret
from .base import (
    MAX_AMOUNT,
    REVERSAL_KINDS,
    Checkout,
    CheckoutRequest,
    EventKind,
    InvalidPayload,
    InvalidSignature,
    PageHost,
    ProviderError,
    ProviderEvent,
    ProviderParts,
)
from .stripe_api import API_VERSION, DISPUTE_EVENT_TYPES, REFUND_EVENT_TYPES

if TYPE_CHECKING:
    from stripe.params.checkout import SessionCreateParams

PROVIDER: Final = "stripe"
SIGNATURE_HEADER: Final = "Stripe-Signature"

# The SDK reports why a header failed only in its message; these prefixes pick ours.
_SDK_REASONS: Final = (
    ("Unable to extract timestamp", "malformed Stripe-Signature header"),
    ("No signatures found with expected scheme", "no v1 signature in Stripe-Signature header"),
    ("No signatures found matching", "signature does not match any configured signing secret"),
)


class StripeWebhooks:
    """Verifies Stripe webhook deliveries against one or more signing secrets.

    Several secrets are accepted at once so one can be rolled without dropping deliveries:
    Stripe signs with both during the overlap, and any one matching is enough. With `livemode`
    set, events from the other mode are verified but ignored; so are events of a connected
    account (a top-level `account`, which `stripe listen` forwards by default) unless `account`
    names it as ours.
    """

    name: str = PROVIDER

    def __init__(
        self,
        signing_secrets: Sequence[Secret],
        *,
        tolerance_s: int = 300,
        livemode: bool | None = None,
        account: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not signing_secrets:
            raise ValueError("at least one webhook signing secret is required")
        if tolerance_s <= 0:  # the SDK treats 0 as "no age check": never allow that
            raise ValueError("tolerance_s must be positive")
        self._secrets = tuple(signing_secrets)
        self._tolerance_s = tolerance_s
        self._livemode = livemode
        self._account = account
        self._clock = clock

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> ProviderEvent:
        header = headers.get(SIGNATURE_HEADER)
        if not header:
            raise InvalidSignature("missing Stripe-Signature header")
        if not header.isascii():
            raise InvalidSignature("malformed Stripe-Signature header")
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidSignature(
                "body is not UTF-8, so it cannot carry a valid signature"
            ) from None
        self._verify(payload, header)
        try:
            event = json.loads(payload)
        except (ValueError, RecursionError):
            raise InvalidPayload("signed body is not JSON we can read") from None
        normalised = normalise_event(event)
        if self._livemode is not None and normalised.livemode is not self._livemode:
            # A test-mode payment must never credit a live account, nor the other way round.
            return _ignored(
                normalised, f"livemode={normalised.livemode}; this service takes {self._livemode}"
            )
        account = event.get("account")
        if account is not None and account != self._account:
            # Another business's money: a Connect platform hears of its connected accounts.
            return _ignored(normalised, f"event of connected account {str(account)[:60]}")
        return normalised

    def _verify(self, payload: str, header: str) -> None:
        reasons: list[str] = []
        for secret in self._secrets:
            try:
                stripe.WebhookSignature.verify_header(
                    payload, header, secret.reveal(), self._tolerance_s
                )
            except stripe.SignatureVerificationError as exc:
                reasons.append(self._reason(str(exc)))
            except (TypeError, ValueError):  # a header the SDK cannot even compare
                reasons.append("malformed Stripe-Signature header")
            else:
                if _signed_timestamp(header) > self._clock() + self._tolerance_s:
                    # The SDK only checks the past: a header signed ahead would stay good
                    # until that time came. Refused like a stale one (it matched a secret).
                    raise InvalidSignature(
                        f"signature timestamp is more than {self._tolerance_s} s in the future"
                    )
                return
        # A stale signature that matched a secret is the most precise thing we can say.
        raise InvalidSignature(self._stale if self._stale in reasons else reasons[0])

    @property
    def _stale(self) -> str:
        return f"signature timestamp is older than {self._tolerance_s} s"

    def _reason(self, sdk_message: str) -> str:
        if sdk_message.startswith("Timestamp outside the tolerance zone"):
            return self._stale
        for prefix, reason in _SDK_REASONS:
            if sdk_message.startswith(prefix):
                return reason
        return "invalid Stripe-Signature header"


def _signed_timestamp(header: str) -> int:
    """The `t=` the SDK verified the signature with: its first one, read as the SDK reads it."""
    items = [item.split("=", 2) for item in header.split(",")]
    return int(next(item[1] for item in items if item[0] == "t"))


def _ignored(event: ProviderEvent, note: str) -> ProviderEvent:
    return replace(event, kind=EventKind.IGNORED, note=note, parts=())


class StripeCheckouts:
    """Stripe's Checkout Sessions through the official SDK (async over aiohttp, retries on).

    Sessions read back (on the return page, or in reconciliation) are normalised exactly as
    their checkout.session.* webhook would be, so every path credits the same ledger row.
    """

    name: str = PROVIDER

    def __init__(
        self, secret_key: Secret, *, api_base: str | None = None, timeout_s: float = 20.0
    ) -> None:
        self._http = stripe.AIOHTTPClient(timeout=timeout_s)
        self._client = stripe.StripeClient(
            secret_key.reveal(),
            http_client=self._http,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=MAX_NETWORK_RETRIES,
            stripe_version=API_VERSION,
        )

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    def routes(self, host: PageHost) -> Sequence[web.AbstractRouteDef]:
        return ()  # the buyer pays on Stripe's own page

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        metadata = {"sid": request.sid, "address": request.address}
        params: SessionCreateParams = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": request.currency,
                        "unit_amount": request.amount,
                        "product_data": {"name": PRODUCT_NAME},
                    },
                }
            ],
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "client_reference_id": request.sid,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "expires_at": request.expires_at,
            # Credits are sold in our currency at our price: a converted local price would
            # change amount_total and currency under us, and the ledger keeps one currency.
            "adaptive_pricing": {"enabled": False},
        }
        async with _asking_stripe():
            session = await self._client.v1.checkout.sessions.create_async(
                params, {"idempotency_key": request.idempotency_key}
            )
        if not isinstance(session.url, str) or not session.url.startswith(("https://", "http://")):
            raise ProviderError("Stripe answered without a payment page URL")
        return Checkout(id=session.id, url=session.url, expires_at=session.expires_at)

    async def retrieve_checkout(self, checkout_id: str) -> ProviderEvent | None:
        async with _asking_stripe():
            session = await self._client.v1.checkout.sessions.retrieve_async(
                checkout_id, {"expand": ["payment_intent"]}
            )
        return session_event(session.to_dict(), source="retrieve")

    async def settled_since(self, since: int) -> list[ProviderEvent]:
        created = {"gte": since}
        sessions = await self._list(
            self._client.v1.checkout.sessions.list_async, {"created": created, "status": "complete"}
        )
        reversal_events = await self._list(
            self._client.v1.events.list_async,
            {"created": created, "types": [*REFUND_EVENT_TYPES, *DISPUTE_EVENT_TYPES]},
        )
        paid = [session_event(session, source="reconcile") for session in sessions]
        return [
            *(e for e in paid if e is not None and e.kind in (EventKind.PAID, EventKind.IGNORED)),
            *reversed([_as_event(event) for event in reversal_events]),  # oldest first
        ]

    async def _list(self, list_async: Any, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Every object of a Stripe list, page by page (bounded)."""
        found: list[dict[str, Any]] = []
        query = {**query, "limit": 100}
        for _ in range(MAX_RECONCILE_PAGES):
            async with _asking_stripe():
                page = await list_async(query)
            found.extend(item.to_dict() for item in page.data)
            if not page.has_more or not page.data:
                return found
            query["starting_after"] = page.data[-1].id
        raise ProviderError(
            f"more than {MAX_RECONCILE_PAGES * 100} objects since then; reconcile a shorter period"
        )


MAX_RECONCILE_PAGES: Final = 100
MAX_NETWORK_RETRIES: Final = 2
PRODUCT_NAME: Final = "Hero credits"


def parts(settings: Settings, secrets: Secrets) -> ProviderParts:
    """Stripe for either daemon: one client sells and reconciles (with the secret key), the
    webhook parser checks deliveries (with the signing keys); either may be missing."""
    client = (
        StripeCheckouts(
            secrets.stripe_secret_key,
            api_base=settings.stripe_api_base,
            timeout_s=settings.provider_timeout_s,
        )
        if secrets.stripe_secret_key is not None
        else None
    )
    webhooks = (
        StripeWebhooks(
            secrets.webhook_signing_keys,
            tolerance_s=settings.webhook_tolerance_s,
            livemode=livemode_of(secrets.stripe_secret_key),
            account=settings.stripe_account,
        )
        if secrets.webhook_signing_keys
        else None
    )
    return ProviderParts(
        checkouts=client,
        webhooks=webhooks,
        reconciler=client,
        owned=(client,) if client is not None else (),
        missing="--provider=stripe needs STRIPE_SANDBOX_SECRET_KEY",
    )


def livemode_of(secret_key: Secret | None) -> bool | None:
    """Which Stripe mode an API key is for (None when there is none, or its prefix is odd)."""
    if secret_key is None:
        return None
    key = secret_key.reveal()
    if key.startswith(("sk_live_", "rk_live_")):
        return True
    if key.startswith(("sk_test_", "rk_test_")):
        return False
    return None


def session_event(session: dict[str, Any], *, source: str) -> ProviderEvent | None:
    """A session read from the API, as the webhook announcing its state would be read.

    None for a session still open: nothing has happened to it yet. `source` names where it was
    read (the event id is `<source>:<session id>`, so the ledger says which path credited).
    """
    status = session.get("status")
    if status == "open":
        return None
    return _as_event(
        {
            "object": "event",
            "id": f"{source}:{session.get('id')}",
            "type": _announcing_type(session) or f"checkout.session.status.{str(status)[:40]}",
            "livemode": session.get("livemode"),
            "data": {"object": session},
        }
    )


def _announcing_type(session: dict[str, Any]) -> str | None:
    """The webhook type that reports what a session's state says.

    A delayed payment that failed leaves the session complete and unpaid for good; only its
    PaymentIntent (when expanded) tells "still settling" from "failed".
    """
    status = session.get("status")
    if status == "expired":
        return "checkout.session.expired"
    if status != "complete":
        return None
    intent = session.get("payment_intent")
    intent_status = intent.get("status") if isinstance(intent, dict) else None
    if session.get("payment_status") == "unpaid" and intent_status in _FAILED_INTENT:
        return "checkout.session.async_payment_failed"
    return "checkout.session.completed"


_FAILED_INTENT: Final = ("requires_payment_method", "canceled")


def _as_event(event: dict[str, Any]) -> ProviderEvent:
    """Normalise as a webhook would be; what cannot be read is reported, not fatal."""
    try:
        return normalise_event(event)
    except InvalidPayload as exc:
        obj = event.get("data", {}).get("object", {})
        return ProviderEvent(
            provider=PROVIDER,
            kind=EventKind.IGNORED,
            event_id=str(event.get("id"))[:100],
            raw_type=str(event.get("type"))[:100],
            checkout_id=_text(obj.get("id")) if isinstance(obj, dict) else None,
            note=f"cannot be read: {exc}",
        )


@contextlib.asynccontextmanager
async def _asking_stripe() -> AsyncIterator[None]:
    """Every way a call to Stripe can fail, as a ProviderError.

    The SDK wraps what fails while sending; a connection that drops or stalls while the answer
    is being read reaches us as aiohttp's or asyncio's own exception.
    """
    try:
        yield
    except stripe.StripeError as exc:
        raise ProviderError(_stripe_failure(exc)) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ProviderError(f"Stripe's answer did not arrive whole: {type(exc).__name__}") from None


def _stripe_failure(exc: stripe.StripeError) -> str:
    """Say what went wrong without echoing Stripe's message (it can quote keys).

    The error's code, parameter and request id are Stripe's identifiers, safe to log, and what
    an operator needs to look the request up.
    """
    details = [
        f"HTTP {exc.http_status}" if exc.http_status else None,
        f"code {exc.code}" if isinstance(exc.code, str) else None,
        f"param {param}" if isinstance(param := getattr(exc, "param", None), str) else None,
        f"request {exc.request_id}" if isinstance(exc.request_id, str) else None,
    ]
    shown = ", ".join(detail[:100] for detail in details if detail and detail.isascii())
    return f"Stripe refused or did not answer: {type(exc).__name__}" + (
        f" ({shown})" if shown else ""
    )


_CHECKOUT_KINDS: Final[dict[str, EventKind]] = {
    "checkout.session.async_payment_succeeded": EventKind.PAID,
    "checkout.session.async_payment_failed": EventKind.FAILED,
    "checkout.session.expired": EventKind.EXPIRED,
}


def normalise_event(event: Any) -> ProviderEvent:
    """Reduce a verified Stripe event (parsed JSON) to a ProviderEvent.

    Raises InvalidPayload when the event lacks what its type promises (Stripe never sends such
    a thing; a signed one means a bug or a leaked secret, and must not be credited).
    """
    if isinstance(event, dict) and event.get("object") == "v2.core.event":
        return ProviderEvent(
            provider=PROVIDER,
            kind=EventKind.IGNORED,
            event_id=_text(event.get("id")) or "v2.core.event",
            raw_type=_text(event.get("type")) or "v2.core.event",
            note="a thin (v2) event: this service reads snapshot events only",
        )
    if not isinstance(event, dict) or event.get("object") != "event":
        raise InvalidPayload("signed body is not a Stripe event object")
    event_id, event_type = _text(event.get("id")), _text(event.get("type"))
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if event_id is None or event_type is None or not isinstance(obj, dict):
        raise InvalidPayload("Stripe event lacks id, type or data.object")
    livemode = event.get("livemode") if isinstance(event.get("livemode"), bool) else None
    base: dict[str, Any] = {
        "provider": PROVIDER,
        "event_id": event_id,
        "raw_type": event_type,
        "livemode": livemode,
    }

    if event_type == "checkout.session.completed":
        status = obj.get("payment_status")
        if status == "paid":
            return _checkout_event(base, EventKind.PAID, obj)
        if status == "unpaid":
            return _checkout_event(base, EventKind.PENDING, obj)
        return ProviderEvent(
            **base, kind=EventKind.IGNORED, note=f"payment_status {status!r}: nothing to credit"
        )
    if event_type in _CHECKOUT_KINDS:
        return _checkout_event(base, _CHECKOUT_KINDS[event_type], obj)
    if event_type == "charge.refunded":
        return _charge_refunded(base, obj)
    if event_type in REFUND_EVENT_TYPES:
        return _refund_report(base, obj)
    if event_type in DISPUTE_EVENT_TYPES:
        return _dispute_report(base, obj)
    return ProviderEvent(**base, kind=EventKind.IGNORED, note="event type not handled")


def _checkout_event(
    base: dict[str, Any], kind: EventKind, session: dict[str, Any]
) -> ProviderEvent:
    checkout_id = _text(session.get("id"))
    if checkout_id is None:
        raise InvalidPayload(f"{base['raw_type']} without a session id")
    amount, currency = _amount(session.get("amount_total")), _text(session.get("currency"))
    if kind is EventKind.PAID and not (amount and currency):
        raise InvalidPayload(f"{base['raw_type']} without a valid amount_total and currency")
    metadata = session.get("metadata")
    reference = _text(session.get("client_reference_id"))
    metadata_sid = _text(metadata.get("sid")) if isinstance(metadata, dict) else None
    sid = reference or metadata_sid
    disagreeing = metadata_sid if reference and metadata_sid not in (None, reference) else None
    # Credits are keyed on the payment (PaymentIntent); a paid session always has one, but if
    # a provider ever omits it the session id is as unique (one payment per session).
    payment = _id_of(session.get("payment_intent")) or checkout_id
    return ProviderEvent(
        **base,
        kind=kind,
        checkout_id=checkout_id,
        external_ref=payment,
        amount=amount,
        currency=currency.lower() if currency else None,
        sid=sid,
        conflicting_sid=disagreeing,
    )


def _charge_refunded(base: dict[str, Any], charge: dict[str, Any]) -> ProviderEvent:
    """A charge's running total refunded, with the refunds it lists (older API versions do)."""
    payment = _id_of(charge.get("payment_intent")) or _id_of(charge.get("id"))
    refunded, currency = _amount(charge.get("amount_refunded")), _text(charge.get("currency"))
    if not payment or refunded is None or not currency:
        raise InvalidPayload("charge.refunded without payment, amount_refunded or currency")
    listed = charge.get("refunds")
    refunds = listed.get("data") if isinstance(listed, dict) else None
    parts = tuple(
        _refund_report(base, refund, payment=payment)
        for refund in (refunds if isinstance(refunds, list) else ())
    )
    return ProviderEvent(
        **base,
        kind=EventKind.REFUNDED,
        external_ref=payment,
        amount=refunded,
        currency=currency.lower(),
        status=_text(charge.get("status")),
        parts=tuple(part for part in parts if part.kind in REVERSAL_KINDS),
    )


# A refund counts (takes money back) while pending or done; failed or canceled it never will.
_REFUND_KINDS: Final[dict[str, EventKind]] = {
    "pending": EventKind.REFUNDED,
    "requires_action": EventKind.REFUNDED,
    "succeeded": EventKind.REFUNDED,
    "failed": EventKind.REFUND_FAILED,
    "canceled": EventKind.REFUND_FAILED,
}
# A dispute holds the money from the moment it opens (inquiries too: credits must not be spent
# while the payment is contested) until it closes in our favour; lost, it keeps it for good.
_DISPUTE_KINDS: Final[dict[str, EventKind]] = {
    "warning_needs_response": EventKind.DISPUTED,
    "warning_under_review": EventKind.DISPUTED,
    "needs_response": EventKind.DISPUTED,
    "under_review": EventKind.DISPUTED,
    "lost": EventKind.DISPUTED,
    "won": EventKind.DISPUTE_WON,
    "warning_closed": EventKind.DISPUTE_WON,
    "prevented": EventKind.DISPUTE_WON,
}


def _refund_report(
    base: dict[str, Any], refund: Any, *, payment: str | None = None
) -> ProviderEvent:
    return _reversal(base, refund, "refund", _REFUND_KINDS, payment=payment)


def _dispute_report(base: dict[str, Any], dispute: dict[str, Any]) -> ProviderEvent:
    return _reversal(base, dispute, "dispute", _DISPUTE_KINDS)


def _reversal(
    base: dict[str, Any],
    obj: Any,
    name: str,
    kinds: Mapping[str, EventKind],
    *,
    payment: str | None = None,
) -> ProviderEvent:
    """One refund or dispute object, as what it does to the payment it belongs to."""
    if not isinstance(obj, dict):
        raise InvalidPayload(f"{base['raw_type']}: a {name} that is not an object")
    reversal_id = _text(obj.get("id"))
    payment = payment or _id_of(obj.get("payment_intent")) or _id_of(obj.get("charge"))
    amount, currency = _amount(obj.get("amount")), _text(obj.get("currency"))
    if reversal_id is None or payment is None or amount is None or currency is None:
        raise InvalidPayload(
            f"{base['raw_type']}: a {name} without id, payment, amount or currency"
        )
    status = obj.get("status")
    kind = kinds.get(status) if isinstance(status, str) else None
    return ProviderEvent(
        **base,
        kind=kind or EventKind.UNKNOWN,
        external_ref=payment,
        amount=amount,
        currency=currency.lower(),
        reversal_id=reversal_id,
        status=str(status)[:40] if kind else None,
        note="" if kind else f"{name} {reversal_id} has unknown status {str(status)[:40]!r}",
    )


def _id_of(value: Any) -> str | None:
    """An expandable field: a bare id, or the expanded object carrying one."""
    return _text(value.get("id") if isinstance(value, dict) else value)


def _text(value: Any) -> str | None:
    """A non-empty ASCII string (Stripe ids, types, currencies and our sids all are), else None.

    ASCII also keeps out lone surrogates, which JSON allows but no database column can hold.
    """
    return value if isinstance(value, str) and value and value.isascii() else None


def _amount(value: Any) -> int | None:
    """A whole number of minor units in [0, MAX_AMOUNT], else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_AMOUNT:
        return value
    return None
