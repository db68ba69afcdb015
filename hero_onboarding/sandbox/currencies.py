"""Stripe's per-currency rules the sandbox enforces: minimum charge, 8 digits, decimals."""

from __future__ import annotations

from typing import Final

# Minimum charge in minor units, from docs.stripe.com/currencies (../shared/reference/stripe.md).
MINIMUM_CHARGE: Final[dict[str, int]] = {
    "usd": 50, "eur": 50, "gbp": 30, "cad": 50, "aud": 50, "nzd": 50, "sgd": 50, "chf": 50,
    "brl": 50, "inr": 50, "jpy": 50, "hkd": 400, "mxn": 1000, "dkk": 250, "nok": 300,
    "sek": 300, "pln": 200, "aed": 200, "myr": 200, "ron": 200, "bgn": 100, "czk": 1500,
    "huf": 17500,
}  # fmt: skip

ZERO_DECIMAL: Final = frozenset({
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
})  # fmt: skip

MAX_AMOUNT: Final = 99_999_999  # "amounts may have at most 8 digits"


def supported(currency: str) -> bool:
    return currency in MINIMUM_CHARGE


def format_amount(amount: int, currency: str) -> str:
    """`1234, "usd"` -> `12.34 USD`; used on the hosted page and in error messages."""
    code = currency.upper()
    if currency in ZERO_DECIMAL:
        return f"{amount:,} {code}"
    return f"{amount // 100:,}.{amount % 100:02d} {code}"
