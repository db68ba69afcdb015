"""Stripe's test cards and test bank accounts, and what each one does on the hosted page.

Numbers and outcomes follow docs.stripe.com/testing. A card
that passes the Luhn check but is not on the list is refused the way Stripe's test mode refuses
real cards.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Result(StrEnum):
    SUCCEEDS = "succeeds"
    DECLINED = "declined"
    NEEDS_3DS = "needs_3ds"


@dataclass(frozen=True)
class TestCard:
    brand: str
    result: Result
    decline_code: str | None = None
    # For 3-D Secure cards: what happens once the buyer authenticates.
    after_3ds: str | None = None
    # After the payment succeeds: the dispute the card's issuer opens (a reason, or "inquiry").
    dispute: str | None = None
    # Refunds of this card's payments succeed, then fail with this reason.
    refund_failure: str | None = None


INQUIRY: Final = "inquiry"
GENERIC_DECLINE: Final = "Your card was declined."
DECLINE_MESSAGES: Final = {
    "generic_decline": GENERIC_DECLINE,
    "insufficient_funds": "Your card has insufficient funds.",
    "lost_card": GENERIC_DECLINE,
    "stolen_card": GENERIC_DECLINE,
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
    "fraudulent": GENERIC_DECLINE,
    "authentication_failed": (
        "We are unable to authenticate your payment method. Please choose a different payment "
        "method and try again."
    ),
}
TEST_CARDS: Final[dict[str, TestCard]] = {
    "4242424242424242": TestCard("visa", Result.SUCCEEDS),
    "4000056655665556": TestCard("visa", Result.SUCCEEDS),
    "5555555555554444": TestCard("mastercard", Result.SUCCEEDS),
    "378282246310005": TestCard("amex", Result.SUCCEEDS),
    "4000000000000077": TestCard("visa", Result.SUCCEEDS),
    "4000000000000002": TestCard("visa", Result.DECLINED, "generic_decline"),
    "4000000000009995": TestCard("visa", Result.DECLINED, "insufficient_funds"),
    "4000000000009987": TestCard("visa", Result.DECLINED, "lost_card"),
    "4000000000009979": TestCard("visa", Result.DECLINED, "stolen_card"),
    "4000000000000069": TestCard("visa", Result.DECLINED, "expired_card"),
    "4000000000000127": TestCard("visa", Result.DECLINED, "incorrect_cvc"),
    "4000000000000119": TestCard("visa", Result.DECLINED, "processing_error"),
    "4100000000000019": TestCard("visa", Result.DECLINED, "fraudulent"),
    "4000000000000341": TestCard("visa", Result.DECLINED, "generic_decline"),
    "4000000000000259": TestCard("visa", Result.SUCCEEDS, dispute="fraudulent"),
    "4000000000002685": TestCard("visa", Result.SUCCEEDS, dispute="product_not_received"),
    "4000000000001976": TestCard("visa", Result.SUCCEEDS, dispute=INQUIRY),
    "4000000000005126": TestCard(
        "visa", Result.SUCCEEDS, refund_failure="expired_or_canceled_card"
    ),
    "4000002500003155": TestCard("visa", Result.NEEDS_3DS),
    "4000002760003184": TestCard("visa", Result.NEEDS_3DS),
    "4000008260003178": TestCard("visa", Result.NEEDS_3DS, after_3ds="insufficient_funds"),
}

TEST_ROUTING_NUMBER: Final = "110000000"
# ACH test accounts: None settles, a code fails the payment when it settles.
TEST_BANK_ACCOUNTS: Final[dict[str, str | None]] = {
    "000123456789": None,
    "000222222227": "insufficient_funds",
    "000111111113": "account_closed",
    "000111111116": "no_account",
}
BANK_FAILURE_MESSAGES: Final = {
    "insufficient_funds": "The customer's account has insufficient funds to cover this payment.",
    "account_closed": "The customer's bank account has been closed.",
    "no_account": "The customer's bank account could not be located.",
}


def digits_of(text: str) -> str:
    return "".join(ch for ch in text if not ch.isspace() and ch != "-")


def luhn_ok(number: str) -> bool:
    if not (number.isascii() and number.isdigit()) or not 12 <= len(number) <= 19:
        return False
    total = 0
    for position, char in enumerate(reversed(number)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0
