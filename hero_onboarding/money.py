"""Amounts in minor units, as people read them. Shared by the pages and the sandbox."""

from __future__ import annotations

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
