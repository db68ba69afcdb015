"""The buyer's side of the hosted page: cards, 3-D Secure and bank debits, as Stripe's test mode.

Each method answers the page's next step (a redirect, an error on a field, a 3-D Secure
challenge) and changes the sandbox only when money moves, through the engine's payment
primitives, so a decline leaves the session open and emits nothing.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, replace
from typing import Final

from ..errors import ErrorAnswer
from . import cards
from .checkout import EMAIL
from .engine import AUTOMATIC, Sandbox, amount_text
from .ids import new_id
from .state import Obj

log = logging.getLogger(__name__)

SESSION_ID_TEMPLATE: Final = "{CHECKOUT_SESSION_ID}"
_EXPIRY: Final = re.compile(r"^\s*(\d{1,2})\s*/?\s*(\d{2}|\d{4})\s*$")


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


class PageError(ErrorAnswer):
    """The hosted page cannot take a payment for this session (unknown, paid, expired)."""

    def __init__(
        self, status: int, title: str, message: str, return_url: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.title, self.message, self.return_url = status, title, message, return_url


class Buyer:
    """Payments made on the hosted page of one sandbox."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def payable_session(self, checkout_id: str) -> Obj:
        """The session if the page may take a payment for it now, else a PageError."""
        session = self._sandbox.state.sessions.get(checkout_id)
        if session is None:
            raise PageError(404, "Not found", "There is no Checkout Session with this address.")
        if session["status"] == "open" and self._sandbox.now() >= session["expires_at"]:
            self._sandbox.expire(session, AUTOMATIC)
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
        if session["customer_email"]:  # the page shows it locked; a forged form cannot change it
            form = replace(form, email=session["customer_email"])
        if not EMAIL.match(form.email):
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
        if (
            not (form.card_cvc.isascii() and form.card_cvc.isdigit())
            or len(form.card_cvc) != cvc_length
        ):
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
            self._sandbox.state.challenges[attempt] = {
                "session": session["id"],
                "card": number,
                "details": details,
                "email": form.email,
                "name": form.name,
            }
            return PayResult(challenge=attempt)
        return self._charge_card(session, card, details, form.email, form.name)

    def authenticate(self, checkout_id: str, attempt: str, *, approved: bool) -> PayResult:
        """The buyer's answer to a 3-D Secure challenge (Complete or Fail on the sandbox page)."""
        session = self.payable_session(checkout_id)
        challenge = self._sandbox.state.challenges.pop(attempt, None)
        if challenge is None or challenge["session"] != checkout_id:
            raise PageError(404, "Not found", "This authentication attempt is not pending.")
        if not approved:
            return _declined("authentication_failed")
        card = cards.TEST_CARDS[challenge["card"]]
        if card.after_3ds is not None:
            return _declined(card.after_3ds)
        return self._charge_card(
            session, card, challenge["details"], challenge["email"], challenge["name"]
        )

    def _charge_card(
        self, session: Obj, card: cards.TestCard, details: Obj, email: str, name: str
    ) -> PayResult:
        intent, charge = self._sandbox.create_payment(session, "card", details, email, name)
        self._sandbox.mark_paid(intent, charge)
        self._sandbox.complete_session(session, intent, email, name, paid=True)
        self._sandbox.emit("charge.succeeded", charge)
        self._sandbox.emit("payment_intent.succeeded", intent)
        self._sandbox.emit("checkout.session.completed", session)
        log.info("%s paid by card: %s", session["id"], amount_text(session))
        if card.refund_failure is not None:
            self._sandbox.state.charge_behaviours[charge["id"]] = {
                "refund_failure": card.refund_failure
            }
        if card.dispute is not None:  # the issuer opens it once the payment went through
            inquiry = card.dispute == cards.INQUIRY
            self._sandbox.disputes.open(charge, amount=None, reason=card.dispute, inquiry=inquiry)
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
        intent, _ = self._sandbox.create_payment(
            session, "us_bank_account", details, form.email, form.name
        )
        self._sandbox.complete_session(session, intent, form.email, form.name, paid=False)
        delay = self._sandbox.config.async_settle_s
        self._sandbox.state.settlements[session["id"]] = {
            "failure": cards.TEST_BANK_ACCOUNTS[account],
            "due_at": None if delay is None else self._sandbox.clock() + delay,
        }
        self._sandbox.emit("payment_intent.processing", intent)
        self._sandbox.emit("checkout.session.completed", session)
        log.info(
            "%s completed by bank debit: %s, settles later", session["id"], amount_text(session)
        )
        return PayResult(redirect=_success_url(session))

    def _today(self) -> tuple[int, int]:
        moment = time.gmtime(self._sandbox.now())
        return moment.tm_year, moment.tm_mon


def _success_url(session: Obj) -> str:
    return str(session["success_url"]).replace(SESSION_ID_TEMPLATE, session["id"])


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
