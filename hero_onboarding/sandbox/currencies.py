"""Stripe's per-currency rules the sandbox enforces: minimum charge and 8 digits."""

from __future__ import annotations

from typing import Final

# Minimum charge in minor units, from docs.stripe.com/currencies.
MINIMUM_CHARGE: Final[dict[str, int]] = {
    "usd": 50, "eur": 50, "gbp": 30, "cad": 50, "aud": 50, "nzd": 50, "sgd": 50, "chf": 50,
    "brl": 50, "inr": 50, "jpy": 50, "hkd": 400, "mxn": 1000, "dkk": 250, "nok": 300,
    "sek": 300, "pln": 200, "aed": 200, "myr": 200, "ron": 200, "bgn": 100, "czk": 1500,
    "huf": 17500,
}  # fmt: skip


MAX_AMOUNT: Final = 99_999_999  # "amounts may have at most 8 digits"


def supported(currency: str) -> bool:
    return currency in MINIMUM_CHARGE
