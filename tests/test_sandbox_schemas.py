"""The schema check itself: Stripe's own fixtures pass it, and invented keys fail it at any depth
(the guard every sandbox test relies on when it says its objects are Stripe's)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.stripe_schema import SUBSET, check_object


def fixture(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads(SUBSET.read_text())["_fixtures"][name])


@pytest.mark.parametrize("name", ["refund", "dispute"])
def test_stripes_own_fixtures_pass(name: str) -> None:
    check_object(fixture(name), name)


@pytest.mark.parametrize(
    ("name", "path", "key"),
    [
        ("refund", (), "refund_status"),
        ("refund", ("destination_details", "card"), "arn"),
        ("dispute", ("evidence_details",), "deadline"),
        ("dispute", ("payment_method_details", "card"), "issuer"),
    ],
)
def test_an_invented_key_fails_at_any_depth(name: str, path: tuple[str, ...], key: str) -> None:
    obj = fixture(name)
    node = obj
    for part in path:
        node = node[part]
    node[key] = "x"
    with pytest.raises(AssertionError, match="keys Stripe does not document"):
        check_object(obj, name)


def test_a_wrong_type_fails() -> None:
    obj = fixture("dispute")
    obj["status"] = "pending"
    with pytest.raises(AssertionError, match="not a valid dispute"):
        check_object(obj, "dispute")
