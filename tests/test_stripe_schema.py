"""The schema check itself must catch what it is there to catch."""

from __future__ import annotations

import copy
import json

import pytest

from tests.stripe_schema import SUBSET, check_object

FIXTURES = json.loads(SUBSET.read_text())["_fixtures"]


@pytest.mark.parametrize("name", ["checkout.session", "payment_intent", "event"])
def test_stripes_own_fixtures_pass(name: str) -> None:
    fixture = copy.deepcopy(FIXTURES[name])
    if name == "event":  # the fixture's data.object is a plan, which the subset does not carry
        fixture["data"]["object"] = FIXTURES["payment_intent"]
    check_object(fixture)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda s: s.update(mode="rental"), "not a valid checkout.session"),
        (lambda s: s.update(amount_total="10"), "not a valid checkout.session"),
        (lambda s: s.pop("livemode"), "not a valid checkout.session"),
        (lambda s: s.update(sandbox_only=True), "keys Stripe does not document"),
    ],
)
def test_broken_objects_fail(change, complaint: str) -> None:
    session = copy.deepcopy(FIXTURES["checkout.session"])
    change(session)
    with pytest.raises(AssertionError, match=complaint):
        check_object(session)


def test_error_bodies_are_checked() -> None:
    check_object({"error": {"type": "invalid_request_error", "message": "x"}})
    with pytest.raises(AssertionError):
        check_object({"error": {"message": "no type"}})
