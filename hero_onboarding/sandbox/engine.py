"""The sandbox's behaviour: sessions, payments, refunds, expiry and the events they cause.

Methods change `SandboxState` synchronously on the event loop (no awaits inside a change, so no
request ever sees half of one); callers then await `StateFile.save` through the app. Every event
is handed to `publish`, which queues its webhook deliveries and says how many it queued.
"""

from __future__ import annotations

import copy
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from . import cards, currencies, objects
from .checkout import plan_session
from .config import SandboxConfig
from .errors import StripeApiError, invalid, missing_resource
from .ids import new_id, session_id
from .state import Obj, SandboxState

log = logging.getLogger(__name__)

SESSION_ID_TEMPLATE: Final = "{CHECKOUT_SESSION_ID}"
EVENT_RETENTION_S: Final = 30 * 86400  # Stripe serves events for 30 days
MAX_LIST_LIMIT: Final = 100
_EXPIRY: Final = re.compile(r"^\s*(\d{1,2})\s*/?\s*(\d{2}|\d{4})\s*$")
_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class RequestMeta:
    """Who caused a change: an API request (id, idempotency key), or nobody (None, None)."""

    request_id: str | None = None
    idempotency_key: str | None = None


AUTOMATIC: Final = RequestMeta()


@dataclass(frozen=True)
class PaymentForm:
    """What the buyer typed on the hosted page."""

    method: str
    email: str
    name: str = ""
    card_number: str = ""
    card_expiry: str = ""
    card_cvc: str = ""
    routing_number: str = ""
    account_number: str = ""


@dataclass(frozen=True)
class PayResult:
    """The page's next step: redirect, show an error (on `field`), or ask for 3-D Secure."""

    redirect: str | None = None
    error: str | None = None
    field: str | None = None
    challenge: str | None = None
    status: int = 200


class PageError(Exception):
    """The hosted page cannot take a payment for this session (unknown, paid, expired)."""

    def __init__(
        self, status: int, title: str, message: str, return_url: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.title, self.message, self.return_url = status, title, message, return_url


class Sandbox:
    def __init__(
        self,
        config: SandboxConfig,
        state: SandboxState,
        *,
        clock: Callable[[], float],
        publish: Callable[[Obj], int],
    ) -> None:
        self.config = config
        self.state = state
        self._clock = clock
        self._publish = publish

    def now(self) -> int:
        return int(self._clock())

    # -- Checkout Sessions ------------------------------------------------------------------

    def create_session(self, params: dict[str, Any]) -> Obj:
        now = self.now()
        plan = plan_session(params, now=now)
        new_session_id = session_id()
        session = objects.checkout_session(
            session_id=new_session_id,
            created=now,
            expires_at=plan.expires_at,
            url=f"{self.config.base_url}/c/pay/{new_session_id}",
            amount=plan.amount,
            currency=plan.currency,
            params=params,
            payment_method_types=plan.payment_method_types,
        )
        self.state.sessions[new_session_id] = session
        self.state.line_items[new_session_id] = [
            objects.line_item(session_id=new_session_id, index=index, item=item)
            for index, item in enumerate(plan.line_items)
        ]
        self.state.intent_data[new_session_id] = plan.intent_data
        return session

    def session(self, checkout_id: str, param: str = "session") -> Obj:
        session = self.state.sessions.get(checkout_id)
        if session is None:
            raise missing_resource("checkout.session", checkout_id, param=param)
        return session

    def render_session(self, session: Obj, expand: list[str]) -> Obj:
        """The session as the API serves it, with `expand[]` applied."""
        rendered = dict(session)
        for name in expand:
            if name == "payment_intent" and session["payment_intent"]:
                rendered["payment_intent"] = self.state.payment_intents[session["payment_intent"]]
            elif name == "line_items":
                rendered["line_items"] = self.line_items(session["id"])
            elif name not in ("payment_intent", "line_items"):
                raise invalid(f"This property cannot be expanded ({name}).", param="expand")
        return rendered

    def line_items(self, checkout_id: str, page: Obj | None = None) -> Obj:
        self.session(checkout_id)
        items = self.state.line_items[checkout_id]
        return paginate(
            items, page or {}, url=f"/v1/checkout/sessions/{checkout_id}/line_items", newest=False
        )

    def list_sessions(self, query: Obj) -> Obj:
        def keep(session: Obj) -> bool:
            return (
                query.get("status", session["status"]) == session["status"]
                and query.get("payment_intent", session["payment_intent"])
                == session["payment_intent"]
                and in_range(session["created"], query.get("created"))
            )

        sessions = [s for s in self.state.sessions.values() if keep(s)]
        return paginate(sessions, query, url="/v1/checkout/sessions")

    def expire_session(self, checkout_id: str, meta: RequestMeta) -> Obj:
        session = self.session(checkout_id)
        if session["status"] != "open":
            raise invalid(
                'Only Checkout Sessions with a status in ["open"] can be expired.',
                param="session",
            )
        self._expire(session, meta)
        return session

    def reach_expiry(self, checkout_id: str) -> Obj:
        """Move an open session's expiry to now and expire it as time would (no request)."""
        session = self.session(checkout_id)
        if session["status"] == "open":
            session["expires_at"] = self.now()
        return self.expire_session(checkout_id, AUTOMATIC)

    def _expire(self, session: Obj, meta: RequestMeta) -> None:
        session["status"] = "expired"
        session["url"] = None
        for attempt, challenge in list(self.state.challenges.items()):
            if challenge["session"] == session["id"]:
                del self.state.challenges[attempt]
        self._emit("checkout.session.expired", session, meta)
        log.info("%s expired", session["id"])

    # -- The hosted page ----------------------------------------------------------------------

    def payable_session(self, checkout_id: str) -> Obj:
        """The session if the page may take a payment for it now, else a PageError."""
        session = self.state.sessions.get(checkout_id)
        if session is None:
            raise PageError(404, "Not found", "There is no Checkout Session with this address.")
        if session["status"] == "open" and self.now() >= session["expires_at"]:
            self._expire(session, AUTOMATIC)
        if session["status"] == "expired":
            raise PageError(
                410,
                "This Checkout Session has expired",
                "The payment page is no longer active. Nothing was charged.",
                session["cancel_url"],
            )
        if session["status"] == "complete":
            raise PageError(
                409,
                "This payment is complete",
                "This Checkout Session has already been paid; it cannot be paid twice.",
                _success_url(session),
            )
        return session

    def pay(self, checkout_id: str, form: PaymentForm) -> PayResult:
        session = self.payable_session(checkout_id)
        if not _EMAIL.match(form.email):
            return PayResult(error="Enter a valid email address.", field="email", status=400)
        if form.method not in session["payment_method_types"]:
            return PayResult(error="Choose a payment method.", field="method", status=400)
        if form.method == "card":
            return self._pay_by_card(session, form)
        return self._pay_by_bank(session, form)

    def _pay_by_card(self, session: Obj, form: PaymentForm) -> PayResult:
        number = cards.digits_of(form.card_number)
        if not cards.luhn_ok(number):
            return PayResult(error="Your card number is invalid.", field="card_number", status=400)
        expiry = _parse_expiry(form.card_expiry)
        if expiry is None:
            return PayResult(
                error="Your card's expiration date is incomplete.",
                field="card_expiry",
                status=400,
            )
        month, year = expiry
        today = self._today()
        if (year, month) < today:
            return PayResult(
                error="Your card's expiration date is in the past.",
                field="card_expiry",
                status=400,
            )
        card = cards.TEST_CARDS.get(number)
        cvc_length = 4 if card is not None and card.brand == "amex" else 3
        if not (form.card_cvc.isdigit() and len(form.card_cvc) == cvc_length):
            return PayResult(
                error="Your card's security code is incomplete.", field="card_cvc", status=400
            )
        if card is None:
            return PayResult(
                error=(
                    "Your card was declined. Your request was in test mode, but used a non "
                    "test card. For a list of valid test cards, visit: "
                    "https://docs.stripe.com/testing."
                ),
                field="card_number",
                status=402,
            )
        details = {
            "type": "card",
            "card": {
                "brand": card.brand,
                "country": "US",
                "exp_month": month,
                "exp_year": year,
                "funding": "credit",
                "last4": number[-4:],
                "network": card.brand,
            },
        }
        if card.result is cards.Result.DECLINED:
            return _declined(card.decline_code)
        if card.result is cards.Result.NEEDS_3DS:
            attempt = new_id("payatt_")
            self.state.challenges[attempt] = {
                "session": session["id"],
                "card": number,
                "details": details,
                "email": form.email,
                "name": form.name,
            }
            return PayResult(challenge=attempt)
        return self._charge_card(session, details, form.email, form.name)

    def authenticate(self, checkout_id: str, attempt: str, *, approved: bool) -> PayResult:
        """The buyer's answer to a 3-D Secure challenge (Complete or Fail on the sandbox page)."""
        session = self.payable_session(checkout_id)
        challenge = self.state.challenges.pop(attempt, None)
        if challenge is None or challenge["session"] != checkout_id:
            raise PageError(404, "Not found", "This authentication attempt is not pending.")
        if not approved:
            return _declined("authentication_failed")
        card = cards.TEST_CARDS[challenge["card"]]
        if card.after_3ds is not None:
            return _declined(card.after_3ds)
        return self._charge_card(
            session, challenge["details"], challenge["email"], challenge["name"]
        )

    def _charge_card(self, session: Obj, details: Obj, email: str, name: str) -> PayResult:
        intent, charge = self._create_payment(session, "card", details, email, name)
        self._mark_paid(intent, charge)
        self._complete_session(session, intent, email, name, paid=True)
        self._emit("charge.succeeded", charge)
        self._emit("payment_intent.succeeded", intent)
        self._emit("checkout.session.completed", session)
        log.info("%s paid by card: %s", session["id"], amount_text(session))
        return PayResult(redirect=_success_url(session))

    def _pay_by_bank(self, session: Obj, form: PaymentForm) -> PayResult:
        routing = cards.digits_of(form.routing_number)
        account = cards.digits_of(form.account_number)
        if routing != cards.TEST_ROUTING_NUMBER:
            return PayResult(
                error=f"Use the test routing number {cards.TEST_ROUTING_NUMBER}.",
                field="routing_number",
                status=400,
            )
        if account not in cards.TEST_BANK_ACCOUNTS:
            return PayResult(
                error="Use a test account number: 000123456789 settles; 000222222227, "
                "000111111113 and 000111111116 fail when the payment settles.",
                field="account_number",
                status=400,
            )
        details = {
            "type": "us_bank_account",
            "us_bank_account": {
                "account_holder_type": "individual",
                "account_type": "checking",
                "bank_name": "STRIPE TEST BANK",
                "last4": account[-4:],
                "routing_number": routing,
            },
        }
        intent, _ = self._create_payment(session, "us_bank_account", details, form.email, form.name)
        self._complete_session(session, intent, form.email, form.name, paid=False)
        delay = self.config.async_settle_s
        self.state.settlements[session["id"]] = {
            "failure": cards.TEST_BANK_ACCOUNTS[account],
            "due_at": None if delay is None else self._clock() + delay,
        }
        self._emit("payment_intent.processing", intent)
        self._emit("checkout.session.completed", session)
        log.info(
            "%s completed by bank debit: %s, settles later", session["id"], amount_text(session)
        )
        return PayResult(redirect=_success_url(session))

    def settle(self, checkout_id: str, outcome: str | None) -> Obj:
        """Finish a delayed payment: as its test account says, or as `outcome` forces."""
        session = self.session(checkout_id)
        settlement = self.state.settlements.pop(checkout_id, None)
        if settlement is None:
            raise invalid(
                f"Checkout Session {checkout_id} has no delayed payment waiting to settle",
                param="session",
            )
        failure = settlement["failure"]
        if outcome == "succeeded":
            failure = None
        elif outcome == "failed":
            failure = failure or "insufficient_funds"
        intent = self.state.payment_intents[session["payment_intent"]]
        charge = self.state.charges[intent["latest_charge"]]
        if failure is None:
            self._mark_paid(intent, charge)
            session["payment_status"] = "paid"
            self._emit("charge.succeeded", charge)
            self._emit("payment_intent.succeeded", intent)
            self._emit("checkout.session.async_payment_succeeded", session)
        else:
            message = cards.BANK_FAILURE_MESSAGES[failure]
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {
                "type": "invalid_request_error",
                "code": failure,
                "message": message,
                "charge": charge["id"],
                "payment_method_type": "us_bank_account",
            }
            charge.update(status="failed", failure_code=failure, failure_message=message)
            self._emit("charge.failed", charge)
            self._emit("payment_intent.payment_failed", intent)
            self._emit("checkout.session.async_payment_failed", session)
        log.info("%s bank debit %s", checkout_id, "failed: " + failure if failure else "settled")
        return session

    def _create_payment(
        self, session: Obj, method: str, details: Obj, email: str, name: str
    ) -> tuple[Obj, Obj]:
        now = self.now()
        data = self.state.intent_data.get(session["id"], {})
        intent = objects.payment_intent(
            created=now,
            amount=session["amount_total"],
            currency=session["currency"],
            method_type=method,
            data=data,
        )
        charge = objects.charge(created=now, intent=intent, method_details=details, email=email)
        charge["billing_details"]["name"] = name or None
        intent["latest_charge"] = charge["id"]
        self.state.payment_intents[intent["id"]] = intent
        self.state.charges[charge["id"]] = charge
        return intent, charge

    @staticmethod
    def _mark_paid(intent: Obj, charge: Obj) -> None:
        intent.update(status="succeeded", amount_received=intent["amount"])
        charge.update(
            status="succeeded",
            paid=True,
            captured=True,
            amount_captured=charge["amount"],
            outcome={
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": "normal",
                "seller_message": "Payment complete.",
                "type": "authorized",
            },
        )

    @staticmethod
    def _complete_session(session: Obj, intent: Obj, email: str, name: str, *, paid: bool) -> None:
        session.update(
            status="complete",
            payment_status="paid" if paid else "unpaid",
            payment_intent=intent["id"],
            customer_details=objects.customer_details(email, name or None),
            url=None,
        )

    def _today(self) -> tuple[int, int]:
        moment = time.gmtime(self.now())
        return moment.tm_year, moment.tm_mon

    # -- PaymentIntents, refunds, events ----------------------------------------------------

    def payment_intent(self, intent_id: str, param: str = "intent") -> Obj:
        intent = self.state.payment_intents.get(intent_id)
        if intent is None:
            raise missing_resource("payment_intent", intent_id, param=param)
        return intent

    def refund(self, params: Obj, meta: RequestMeta) -> Obj:
        if ("charge" in params) == ("payment_intent" in params):
            raise invalid("Provide exactly one of charge or payment_intent", param="payment_intent")
        if "payment_intent" in params:
            intent = self.payment_intent(params["payment_intent"], "payment_intent")
            charge_id = intent["latest_charge"]
        else:
            charge_id = params["charge"]
        charge = self.state.charges.get(charge_id or "")
        if charge is None:
            raise missing_resource("charge", str(params.get("charge")), param="charge")
        if charge["status"] != "succeeded":
            raise invalid(
                f"Charge {charge['id']} has not succeeded, so it cannot be refunded",
                param="charge",
            )
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining <= 0:
            raise StripeApiError(
                400,
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        amount = params.get("amount", remaining)
        if amount < 1 or amount > remaining:
            raise invalid(
                f"Refund amount ({amount}) must be between 1 and the unrefunded amount on the "
                f"charge ({remaining}).",
                param="amount",
                code="amount_too_large" if amount > remaining else None,
            )
        refund = objects.refund(
            created=self.now(),
            charge_obj=charge,
            amount=amount,
            reason=params.get("reason"),
            meta=params.get("metadata") or {},
        )
        self.state.refunds[refund["id"]] = refund
        previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self._emit("refund.created", refund, meta)
        self._emit("charge.refunded", charge, meta, previous)
        return refund

    def event(self, event_id: str) -> Obj:
        found = self.state.events.get(event_id)
        if found is None:
            raise missing_resource("event", event_id, param="id")
        return found

    def list_events(self, query: Obj) -> Obj:
        types = set(query.get("types") or ())
        if "type" in query:
            types.add(query["type"])

        def keep(event: Obj) -> bool:
            return (
                (not types or any(_type_matches(pattern, event["type"]) for pattern in types))
                and in_range(event["created"], query.get("created"))
                and (
                    "delivery_success" not in query
                    or (event["pending_webhooks"] == 0) == query["delivery_success"]
                )
            )

        return paginate([e for e in self.state.events.values() if keep(e)], query, url="/v1/events")

    def _emit(
        self,
        event_type: str,
        obj: Obj,
        meta: RequestMeta = AUTOMATIC,
        previous: Obj | None = None,
    ) -> Obj:
        event = objects.event(
            created=self.now(),
            event_type=event_type,
            data_object=copy.deepcopy(obj),
            request_id=meta.request_id,
            idempotency_key=meta.idempotency_key,
            pending_webhooks=0,
            previous_attributes=previous,
        )
        self.state.events[event["id"]] = event
        event["pending_webhooks"] = self._publish(event)
        return event

    # -- Time passing -----------------------------------------------------------------------

    def run_due(self) -> float | None:
        """Expire, settle and forget what is due now; return when the next thing falls due."""
        now = self._clock()
        self._forget_old_events(now - EVENT_RETENTION_S)
        upcoming: list[float] = []
        for session in list(self.state.sessions.values()):
            if session["status"] != "open":
                continue
            if session["expires_at"] <= now:
                self._expire(session, AUTOMATIC)
            else:
                upcoming.append(session["expires_at"])
        for checkout_id, settlement in list(self.state.settlements.items()):
            due_at = settlement["due_at"]
            if due_at is None:
                continue
            if due_at <= now:
                self.settle(checkout_id, None)
            else:
                upcoming.append(due_at)
        return min(upcoming, default=None)

    def _forget_old_events(self, cutoff: float) -> None:
        """Drop events past Stripe's 30 days with their finished deliveries: bounded state."""
        owed = {d["event"] for d in self.state.deliveries.values() if d["status"] == "pending"}
        old = {
            event_id
            for event_id, event in self.state.events.items()
            if event["created"] < cutoff and event_id not in owed
        }
        if not old:
            return
        for event_id in old:
            del self.state.events[event_id]
        for delivery_id, delivery in list(self.state.deliveries.items()):
            if delivery["event"] in old:
                del self.state.deliveries[delivery_id]


def paginate(items: list[Obj], query: Obj, *, url: str, newest: bool = True) -> Obj:
    """Stripe's cursor pagination: `limit` (1..100), `starting_after`, `ending_before`."""
    ordered = list(reversed(items)) if newest else list(items)
    limit = query.get("limit", 10)
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise invalid(f"Invalid limit: must be between 1 and {MAX_LIST_LIMIT}", param="limit")
    ids = [item["id"] for item in ordered]
    if "starting_after" in query:
        cursor = query["starting_after"]
        if cursor not in ids:
            raise missing_resource("object", cursor, param="starting_after")
        ordered = ordered[ids.index(cursor) + 1 :]
        page, has_more = ordered[:limit], len(ordered) > limit
    elif "ending_before" in query:
        cursor = query["ending_before"]
        if cursor not in ids:
            raise missing_resource("object", cursor, param="ending_before")
        ordered = ordered[: ids.index(cursor)]
        page, has_more = ordered[-limit:], len(ordered) > limit
    else:
        page, has_more = ordered[:limit], len(ordered) > limit
    return objects.list_object(page, url=url, has_more=has_more)


def in_range(value: int, bounds: int | Obj | None) -> bool:
    """Stripe's `created` filter: an exact integer or a hash of gt/gte/lt/lte."""
    if bounds is None:
        return True
    if isinstance(bounds, int):
        return value == bounds
    return (
        value > bounds.get("gt", value - 1)
        and value >= bounds.get("gte", value)
        and value < bounds.get("lt", value + 1)
        and value <= bounds.get("lte", value)
    )


def _type_matches(pattern: str, event_type: str) -> bool:
    if pattern.endswith("*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def _success_url(session: Obj) -> str:
    return str(session["success_url"]).replace(SESSION_ID_TEMPLATE, session["id"])


def amount_text(session: Obj) -> str:
    """`12.34 USD`: how the page and the log show what a session charges."""
    return currencies.format_amount(session["amount_total"], session["currency"])


def _declined(decline_code: str | None) -> PayResult:
    code = decline_code or "generic_decline"
    return PayResult(error=cards.DECLINE_MESSAGES[code], field="card_number", status=402)


def _parse_expiry(text: str) -> tuple[int, int] | None:
    match = _EXPIRY.match(text)
    if match is None:
        return None
    month, year = int(match.group(1)), int(match.group(2))
    if len(match.group(2)) == 2:
        year += 2000
    if not 1 <= month <= 12:
        return None
    return month, year
