"""The rules Stripe applies to a new payment-mode Checkout Session, beyond the schema's types.

params.py has already checked names and types against Stripe's request schema; here come the
rules that need several fields at once (amounts, currencies, time windows, URLs), and a plain
refusal for the Stripe features the sandbox does not emulate, rather than silently ignoring them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from ..money import format_amount
from . import currencies
from .errors import StripeApiError, invalid, missing_resource

MIN_LIFETIME_S: Final = 30 * 60
MAX_LIFETIME_S: Final = 24 * 3600
MAX_LINE_ITEMS: Final = 100
URL_MAX: Final = 5000

SUPPORTED_PARAMS: Final = frozenset({
    "adaptive_pricing", "allowed_payment_method_types", "cancel_url", "client_reference_id",
    "currency", "customer_email", "expand", "expires_at", "line_items", "locale", "metadata",
    "mode", "payment_intent_data", "payment_method_types", "submit_type", "success_url",
    "ui_mode",
})  # fmt: skip
SUPPORTED_INTENT_DATA: Final = frozenset({
    "capture_method", "description", "metadata", "receipt_email", "statement_descriptor",
    "statement_descriptor_suffix",
})  # fmt: skip
SUPPORTED_LINE_ITEM: Final = frozenset({"metadata", "price", "price_data", "quantity"})
SUPPORTED_PRICE_DATA: Final = frozenset({"currency", "product_data", "unit_amount"})
EXPANDABLE: Final = frozenset({"customer", "line_items", "payment_intent"})
INTENT_EXPANDABLE: Final = frozenset({"latest_charge"})
# Delayed-notification method the hosted page offers, per currency (ACH for USD only).
ASYNC_METHODS: Final = {"usd": "us_bank_account"}

EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class SessionPlan:
    """A validated request: what the new session charges and when it expires."""

    amount: int
    currency: str
    expires_at: int
    payment_method_types: list[str]
    line_items: list[dict[str, Any]]
    intent_data: dict[str, Any]


def plan_session(params: dict[str, Any], *, now: int) -> SessionPlan:
    """Check a typed create request against Stripe's rules; raise the error Stripe would."""
    _refuse_unsupported(params, SUPPORTED_PARAMS, "")
    _require(params, "mode")
    if params["mode"] != "payment":
        raise invalid(
            "The sandbox emulates mode=payment only; test setup and subscription Checkout "
            "against Stripe's test mode",
            param="mode",
        )
    if params.get("ui_mode", "hosted_page") != "hosted_page":
        raise invalid("The sandbox renders ui_mode=hosted_page only", param="ui_mode")
    _require(params, "success_url")
    for name in ("success_url", "cancel_url"):
        if name in params:
            _check_url(params[name], name)
    if "customer_email" in params and not EMAIL.match(params["customer_email"]):
        raise invalid(
            f"Invalid email address: {params['customer_email'][:60]}",
            param="customer_email",
            code="email_invalid",
        )
    check_metadata(params.get("metadata"), "metadata")
    intent_data = params.get("payment_intent_data") or {}
    _refuse_unsupported(intent_data, SUPPORTED_INTENT_DATA, "payment_intent_data")
    if intent_data.get("capture_method", "automatic") != "automatic":
        raise invalid(
            "The sandbox captures automatically only",
            param="payment_intent_data[capture_method]",
        )
    check_metadata(intent_data.get("metadata"), "payment_intent_data[metadata]")
    check_expand(params.get("expand"), EXPANDABLE)

    currency, amount, items = _price_line_items(params)
    if params.get("currency", currency).lower() != currency:
        raise invalid(
            f"currency {params['currency']} does not match the line items' currency {currency}",
            param="currency",
        )
    _check_amount(amount, currency)
    methods = _payment_method_types(params, currency)
    return SessionPlan(
        amount=amount,
        currency=currency,
        expires_at=_expires_at(params, now),
        payment_method_types=methods,
        line_items=items,
        intent_data=intent_data,
    )


def check_expand(expand: list[str] | None, allowed: frozenset[str]) -> None:
    """Stripe refuses to expand what cannot be expanded, rather than ignoring it."""
    for index, name in enumerate(expand or ()):
        if name not in allowed:
            raise invalid(f"This property cannot be expanded ({name}).", param=f"expand[{index}]")


def check_metadata(metadata: dict[str, str] | None, param: str) -> None:
    """Stripe's limits: 50 keys, keys <= 40 characters, values <= 500 characters."""
    if not metadata:
        return
    if len(metadata) > 50:
        raise invalid(f"Invalid {param}: at most 50 keys are allowed", param=param)
    for key, value in metadata.items():
        if len(key) > 40:
            raise invalid(
                f"Invalid {param}: keys must be at most 40 characters", param=f"{param}[{key}]"
            )
        if len(value) > 500:
            raise invalid(
                f"Invalid {param}: values must be at most 500 characters",
                param=f"{param}[{key}]",
            )


def _refuse_unsupported(params: dict[str, Any], supported: frozenset[str], parent: str) -> None:
    for name in params:
        if name not in supported:
            param = f"{parent}[{name}]" if parent else name
            raise invalid(
                f"The sandbox does not emulate {param}, which Stripe accepts; drop it here or "
                "test it against Stripe's test mode",
                param=param,
            )


def _require(params: dict[str, Any], name: str, parent: str = "") -> None:
    if params.get(name) in (None, "", []):
        param = f"{parent}[{name}]" if parent else name
        raise invalid(f"Missing required param: {param}.", param=param, code="parameter_missing")


def _check_url(url: str, param: str) -> None:
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # an unbalanced "[" in the host, for one
        valid = False
    if len(url) > URL_MAX or not valid:
        raise invalid("Not a valid URL", param=param, code="url_invalid")


def _price_line_items(params: dict[str, Any]) -> tuple[str, int, list[dict[str, Any]]]:
    _require(params, "line_items")
    items: list[dict[str, Any]] = params["line_items"]
    if len(items) > MAX_LINE_ITEMS:
        raise invalid(
            f"Invalid line_items: at most {MAX_LINE_ITEMS} items in payment mode",
            param="line_items",
        )
    currency: str | None = None
    total = 0
    for index, item in enumerate(items):
        where = f"line_items[{index}]"
        _refuse_unsupported(item, SUPPORTED_LINE_ITEM, where)
        if "price" in item:
            raise missing_resource("price", item["price"], param=f"{where}[price]")
        _require(item, "price_data", where)
        _require(item, "quantity", where)
        if item["quantity"] < 1:
            raise invalid("Invalid quantity: must be at least 1", param=f"{where}[quantity]")
        check_metadata(item.get("metadata"), f"{where}[metadata]")
        price = item["price_data"]
        _refuse_unsupported(price, SUPPORTED_PRICE_DATA, f"{where}[price_data]")
        _require(price, "unit_amount", f"{where}[price_data]")
        _require(price, "product_data", f"{where}[price_data]")
        item_currency = price["currency"].lower()
        if not currencies.supported(item_currency):
            raise invalid(
                f"Invalid currency: {price['currency'][:10]}. The sandbox supports: "
                + ", ".join(sorted(currencies.MINIMUM_CHARGE)),
                param=f"{where}[price_data][currency]",
            )
        if currency is not None and item_currency != currency:
            raise invalid(
                "All line items must share one currency", param=f"{where}[price_data][currency]"
            )
        if price["unit_amount"] < 0:
            raise invalid(
                "Invalid unit_amount: must be at least 0",
                param=f"{where}[price_data][unit_amount]",
            )
        check_metadata(
            price["product_data"].get("metadata"), f"{where}[price_data][product_data][metadata]"
        )
        price["currency"] = currency = item_currency
        total += price["unit_amount"] * item["quantity"]
        if total > currencies.MAX_AMOUNT:
            break  # _check_amount says why; stop before a pathological product
    assert currency is not None
    return currency, total, items


def _check_amount(amount: int, currency: str) -> None:
    minimum = currencies.MINIMUM_CHARGE[currency]
    if amount < minimum:
        raise StripeApiError(
            400,
            "The Checkout Session's total amount due must add up to at least "
            f"{format_amount(minimum, currency)}",
            code="amount_too_small",
            param="line_items",
        )
    if amount > currencies.MAX_AMOUNT:
        raise StripeApiError(
            400,
            "The Checkout Session's total amount due must be no more than "
            f"{format_amount(currencies.MAX_AMOUNT, currency)} (8 digits)",
            code="amount_too_large",
            param="line_items",
        )


def _payment_method_types(params: dict[str, Any], currency: str) -> list[str]:
    offered = ["card"]
    if currency in ASYNC_METHODS:
        offered.append(ASYNC_METHODS[currency])
    if "payment_method_types" in params and "allowed_payment_method_types" in params:
        raise invalid(
            "Pass payment_method_types or allowed_payment_method_types, not both",
            param="allowed_payment_method_types",
            code="parameters_exclusive",
        )
    name = "allowed_payment_method_types"
    if name not in params:
        name = "payment_method_types"
    requested = params.get(name)
    if not requested:
        return offered
    for index, method in enumerate(requested):
        if method not in offered:
            raise invalid(
                f"The payment method type {method[:40]} is not available in the sandbox for "
                f"{currency}; available: {', '.join(offered)}",
                param=f"{name}[{index}]",
            )
    return list(dict.fromkeys(requested))


def _expires_at(params: dict[str, Any], now: int) -> int:
    expires_at: int | None = params.get("expires_at")  # the schema made it an integer
    if expires_at is None:
        return now + MAX_LIFETIME_S
    if expires_at < now + MIN_LIFETIME_S:
        raise invalid(
            "The `expires_at` timestamp must be at least 30 minutes from Checkout Session "
            "creation.",
            param="expires_at",
        )
    if expires_at > now + MAX_LIFETIME_S:
        raise invalid(
            "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
            param="expires_at",
        )
    return expires_at
