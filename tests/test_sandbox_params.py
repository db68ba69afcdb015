"""Bracket notation and schema-typed params, as Stripe reads a form body."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from hero_onboarding.sandbox.errors import StripeApiError
from hero_onboarding.sandbox.forms import parse_pairs
from hero_onboarding.sandbox.params import checkout_session_create_schema, coerce


def read(body: str) -> dict:
    return coerce(
        parse_pairs(parse_qsl(body, keep_blank_values=True)), checkout_session_create_schema()
    )


def test_the_sdks_own_body_reads_back_typed() -> None:
    body = (
        "mode=payment&line_items[0][price_data][currency]=usd"
        "&line_items[0][price_data][unit_amount]=500"
        "&line_items[0][price_data][product_data][name]=Credits&line_items[0][quantity]=1"
        "&success_url=https%3A%2F%2Fex.com%2Fok%3Fsession_id%3D%7BCHECKOUT_SESSION_ID%7D"
        "&client_reference_id=user-42&metadata[user_id]=42"
        "&payment_intent_data[metadata][user_id]=42&expires_at=1795852117"
        "&adaptive_pricing[enabled]=false&expand[]=payment_intent&expand[]=line_items"
    )
    assert read(body) == {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "usd",
                    "unit_amount": 500,
                    "product_data": {"name": "Credits"},
                },
                "quantity": 1,
            }
        ],
        "success_url": "https://ex.com/ok?session_id={CHECKOUT_SESSION_ID}",
        "client_reference_id": "user-42",
        "metadata": {"user_id": "42"},
        "payment_intent_data": {"metadata": {"user_id": "42"}},
        "expires_at": 1795852117,
        "adaptive_pricing": {"enabled": False},
        "expand": ["payment_intent", "line_items"],
    }


def test_percent_encoded_brackets_read_the_same() -> None:
    assert read("expand%5B0%5D=line_items&metadata%5Bk%5D=v") == {
        "expand": ["line_items"],
        "metadata": {"k": "v"},
    }


def test_metadata_keys_that_look_like_indices_stay_map_keys() -> None:
    assert read("metadata[0]=a&metadata[7]=b") == {"metadata": {"0": "a", "7": "b"}}


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ("nope=1", "nope", "Received unknown parameter: nope"),
        ("payment_intent_data[nope]=1", "payment_intent_data[nope]", "unknown parameter"),
        ("expires_at=12abc", "expires_at", "Invalid integer: 12abc"),
        ("expires_at=9" * 1 + "9" * 30, "expires_at", "Invalid integer"),
        ("adaptive_pricing[enabled]=yes", "adaptive_pricing[enabled]", "Invalid boolean: yes"),
        ("submit_type=now", "submit_type", "must be one of auto, book, donate, pay, or subscribe"),
        ("line_items[1][quantity]=1", "line_items", "must run 0, 1, 2"),
        ("line_items[x][quantity]=1", "line_items", "is not a list index"),
        ("line_items=3", "line_items", "Invalid array"),
        ("metadata=x", "metadata", "Invalid object"),
        ("mode[a]=payment", "mode", "expected a value, got a hash"),
        (
            "line_items[0][price_data][unit_amount]=5",
            "line_items[0][price_data][currency]",
            "Missing required param",
        ),
        ("client_reference_id=" + "x" * 201, "client_reference_id", "at most 200 characters"),
        ("a]b=1", "a]b", "Invalid parameter name"),
        ("mode=payment&mode=setup", None, "more than once"),
    ],
)
def test_bad_params_name_the_param(body: str, param: str | None, message: str) -> None:
    with pytest.raises(StripeApiError) as caught:
        read(body)
    assert caught.value.status == 400
    assert caught.value.param == param
    assert message in caught.value.message


def test_too_many_or_too_deep_params_are_refused() -> None:
    with pytest.raises(StripeApiError, match="Too many parameters"):
        parse_pairs([(f"metadata[k{i}]", "v") for i in range(1001)])
    with pytest.raises(StripeApiError, match="nested too deeply"):
        parse_pairs([("a" + "[b]" * 9, "v")])
