"""Amounts in minor units, as people read them. Shared by the pages and the sandbox."""

from __future__ import annotations

import re
from typing import Final

# Currencies whose minor unit is the whole unit (Stripe's list).
ZERO_DECIMAL: Final = frozenset({
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
})  # fmt: skip


def format_amount(amount: int, currency: str) -> str:
    """`1234, "usd"` -> `12.34 USD`; `-50, "usd"` -> `-0.50 USD`; `500, "jpy"` -> `500 JPY`."""
    sign, units = ("-" if amount < 0 else ""), abs(amount)
    code = currency.upper()
    if currency.lower() in ZERO_DECIMAL:
        return f"{sign}{units:,} {code}"
    return f"{sign}{units // 100:,}.{units % 100:02d} {code}"


def decimals_of(currency: str) -> int:
    return 0 if currency.lower() in ZERO_DECIMAL else 2


def parse_minor(text: str) -> int:
    """`"1000"` -> 1000: a whole number of minor units, digits only; else ValueError saying why."""
    text = text.strip()
    if not text.isascii() or not text.isdigit():
        raise ValueError("must be a whole number of minor units (cents), digits only")
    if len(text) > 12:
        raise ValueError("is far too large")
    return int(text)


def parse_major(text: str, currency: str) -> int:
    """`"12.50", "usd"` -> 1250: what a person types, in whole units; else ValueError saying why.

    Decimals take a dot. A comma only groups thousands (`1,000.50`): "5,50" is refused rather
    than read as 550, and more decimals than the currency has are refused, never rounded, so
    nobody pays other than what they meant. A leading `$` is tolerated for USD.
    """
    cleaned = text.strip()
    if currency.lower() == "usd":
        cleaned = cleaned.removeprefix("$").strip()
    whole, _, fraction = cleaned.partition(".")
    if "," in whole:
        if not THOUSANDS.fullmatch(whole):
            raise ValueError("must use a dot for decimals, such as 5.50")
        whole = whole.replace(",", "")
    digits = whole + fraction
    if not digits.isascii() or not digits.isdigit():
        raise ValueError("must be a number such as 12.50")
    decimals = decimals_of(currency)
    if len(fraction) > decimals:
        places = "no decimals" if decimals == 0 else f"at most {decimals} decimals"
        raise ValueError(f"may have {places} in {currency.upper()}")
    if len(whole) > 12:
        raise ValueError("is far too large")
    scale: int = 10**decimals  # typeshed: int ** int may be a float (a negative exponent)
    return int(whole or "0") * scale + int(fraction.ljust(decimals, "0") or "0")


THOUSANDS: Final = re.compile(r"[0-9]{1,3}(,[0-9]{3})+")
