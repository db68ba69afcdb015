"""The sandbox's behaviour: sessions, payments, expiry and the events they cause.

Refunds and disputes live in refunds.py and disputes.py, on top of the charges kept here.

Methods change `SandboxState` synchronously on the event loop (no awaits inside a change, so no
request ever sees half of one); callers then await `StateFile.save` through the app. Every event
is handed to `publish`, which queues its webhook deliveries and says how many it queued.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ..money import format_amount
from . import cards, objects
from .checkout import EXPANDABLE, INTENT_EXPANDABLE, check_expand, plan_session
from .config import SandboxConfig
from .disputes import Disputes
from .errors import invalid, missing_resource
from .ids import session_id
from .listing import in_range, paginate, type_matches
from .refunds import Refunds
from .state import Obj, SandboxState

log = logging.getLogger(__name__)

EVENT_RETENTION_S: Final = 30 * 86400  # Stripe serves events for 30 days
MAX_EVENT_TYPES: Final = 20


@dataclass(frozen=True)
class RequestMeta:
    """Who caused a change: an API request (id, idempotency key), or nobody (None, None)."""

    request_id: str | None = None
    idempotency_key: str | None = None


AUTOMATIC: Final = RequestMeta()


class Sandbox:
    """One Stripe account's worth of Checkout: the API's objects and everything that moves them.

    The hosted page's buyer flow lives in buyer.py and uses the payment primitives here
    (`create_payment`, `mark_paid`, `complete_session`, `emit`), so every path that moves money
    builds the same objects and events.
    """

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
        self.clock = clock
        self._publish = publish
        self.refunds = Refunds(self)
        self.disputes = Disputes(self)
        # Bumped by every event emitted or forgotten. Changes no API request answers for (the
        # clock's work, an expiry found on a page visit) are saved by whoever sees it move.
        self.revision = 0

    def now(self) -> int:
        return int(self.clock())

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
        check_expand(expand, EXPANDABLE)
        rendered = dict(session)  # `customer` expands to itself: the sandbox makes no customers
        if "payment_intent" in expand and session["payment_intent"]:
            rendered["payment_intent"] = self.state.payment_intents[session["payment_intent"]]
        if "line_items" in expand:
            rendered["line_items"] = self.line_items(session["id"])
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

        expand = [name.removeprefix("data.") for name in query.get("expand", [])]
        check_expand(expand, EXPANDABLE)
        listed = paginate(
            [s for s in self.state.sessions.values() if keep(s)], query, url="/v1/checkout/sessions"
        )
        listed["data"] = [self.render_session(s, expand) for s in listed["data"]]
        return listed

    def expire_session(self, checkout_id: str, meta: RequestMeta) -> Obj:
        session = self.session(checkout_id)
        if session["status"] != "open":
            raise invalid(
                'Only Checkout Sessions with a status in ["open"] can be expired.',
                param="session",
            )
        self.expire(session, meta)
        return session

    def reach_expiry(self, checkout_id: str) -> Obj:
        """Move an open session's expiry to now and expire it as time would (no request)."""
        session = self.session(checkout_id)
        if session["status"] == "open":
            session["expires_at"] = self.now()
        return self.expire_session(checkout_id, AUTOMATIC)

    def expire(self, session: Obj, meta: RequestMeta) -> None:
        session["status"] = "expired"
        session["url"] = None
        self._drop_challenges(session["id"])
        self.emit("checkout.session.expired", session, meta)
        log.info("%s expired", session["id"])

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
            self.mark_paid(intent, charge)
            session["payment_status"] = "paid"
            self.emit("charge.succeeded", charge)
            self.emit("payment_intent.succeeded", intent)
            self.emit("checkout.session.async_payment_succeeded", session)
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
            self.emit("charge.failed", charge)
            self.emit("payment_intent.payment_failed", intent)
            self.emit("checkout.session.async_payment_failed", session)
        log.info("%s bank debit %s", checkout_id, "failed: " + failure if failure else "settled")
        return session

    def create_payment(
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
        self.state.payment_intents[intent["id"]] = intent
        self.emit("payment_intent.created", intent)  # Checkout creates it at confirmation
        intent.update(status="processing", latest_charge=charge["id"])
        self.state.charges[charge["id"]] = charge
        return intent, charge

    @staticmethod
    def mark_paid(intent: Obj, charge: Obj) -> None:
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

    def complete_session(
        self, session: Obj, intent: Obj, email: str, name: str, *, paid: bool
    ) -> None:
        self._drop_challenges(session["id"])
        session.update(
            status="complete",
            payment_status="paid" if paid else "unpaid",
            payment_intent=intent["id"],
            customer_details=objects.customer_details(email, name or None),
            url=None,
        )

    def _drop_challenges(self, checkout_id: str) -> None:
        """A closed session answers no more 3-D Secure challenges (nor keeps their card data)."""
        for attempt, challenge in list(self.state.challenges.items()):
            if challenge["session"] == checkout_id:
                del self.state.challenges[attempt]

    # -- PaymentIntents, refunds, events ----------------------------------------------------

    def payment_intent(self, intent_id: str, param: str = "intent") -> Obj:
        intent = self.state.payment_intents.get(intent_id)
        if intent is None:
            raise missing_resource("payment_intent", intent_id, param=param)
        return intent

    def render_payment_intent(self, intent: Obj, expand: list[str] | None) -> Obj:
        """The PaymentIntent as the API serves it, with `expand[]=latest_charge` applied."""
        check_expand(expand, INTENT_EXPANDABLE)
        rendered = dict(intent)
        if "latest_charge" in (expand or ()) and intent["latest_charge"]:
            rendered["latest_charge"] = self.state.charges[intent["latest_charge"]]
        return rendered

    def charge(self, charge_id: str, param: str = "charge") -> Obj:
        found = self.state.charges.get(charge_id)
        if found is None:
            raise missing_resource("charge", charge_id, param=param)
        return found

    def charge_of(self, params: Obj) -> Obj:
        """The charge that `payment_intent` or `charge` (exactly one of them) names."""
        if ("charge" in params) == ("payment_intent" in params):
            raise invalid("Provide exactly one of charge or payment_intent", param="payment_intent")
        if "charge" in params:
            return self.charge(params["charge"])
        intent = self.payment_intent(params["payment_intent"], "payment_intent")
        if intent["latest_charge"] is None:
            raise invalid(
                f"PaymentIntent {intent['id']} has no charge to act on", param="payment_intent"
            )
        return self.charge(intent["latest_charge"])

    def event(self, event_id: str) -> Obj:
        found = self.state.events.get(event_id)
        if found is None:
            raise missing_resource("event", event_id, param="id")
        return found

    def list_events(self, query: Obj) -> Obj:
        """Stripe's filters: `type` (a name or `prefix.*`) or `types` (up to 20 exact names)."""
        if "type" in query and "types" in query:
            raise invalid(
                "You may pass either type or types, but not both.",
                param="types",
                code="parameters_exclusive",
            )
        types = query.get("types") or []
        if len(types) > MAX_EVENT_TYPES:
            raise invalid(f"types: at most {MAX_EVENT_TYPES} event types", param="types")

        def keep(event: Obj) -> bool:
            return (
                ("type" not in query or type_matches(query["type"], event["type"]))
                and (not types or event["type"] in types)
                and in_range(event["created"], query.get("created"))
                and (
                    "delivery_success" not in query
                    or (event["pending_webhooks"] == 0) == query["delivery_success"]
                )
            )

        return paginate([e for e in self.state.events.values() if keep(e)], query, url="/v1/events")

    def emit(
        self,
        event_type: str,
        obj: Obj,
        meta: RequestMeta | None = None,
        previous: Obj | None = None,
    ) -> Obj:
        meta = meta or AUTOMATIC
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
        self.revision += 1
        return event

    # -- Time passing -----------------------------------------------------------------------

    def run_due(self) -> float | None:
        """Expire, settle and forget what is due now; return when the next thing falls due."""
        now = self.clock()
        self._forget_old_events(now - EVENT_RETENTION_S)
        upcoming: list[float] = []
        for session in list(self.state.sessions.values()):
            if session["status"] != "open":
                continue
            if session["expires_at"] <= now:
                self.expire(session, AUTOMATIC)
            else:
                upcoming.append(session["expires_at"])
        upcoming.extend(self.refunds.run_due(now))
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
        self.revision += 1
        for event_id in old:
            del self.state.events[event_id]
        for delivery_id, delivery in list(self.state.deliveries.items()):
            if delivery["event"] in old:
                del self.state.deliveries[delivery_id]


def amount_text(session: Obj) -> str:
    """`12.34 USD`: how the page and the log show what a session charges."""
    return format_amount(session["amount_total"], session["currency"])
