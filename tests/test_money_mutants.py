"""Billing and the ledger, pinned down: what each call says, to whom, and what it writes.

Written to kill the mutants scripts/mutation_money.sh found alive: the sid and detail of every
outcome, the ref and event id of every ledger entry, the targets a payment's refunds and
disputes imply (reversal_targets, merge, at their boundaries), and the store's filters.
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial
from typing import Any

import pytest

from hero_onboarding.billing import (
    Fulfilment,
    Outcome,
    Unmatched,
    fulfil,
    merge,
    reversal_targets,
)
from hero_onboarding.payments.base import EventKind, ProviderEvent
from hero_onboarding.payments.stripe_provider import normalise_event
from hero_onboarding.store import Store, checkouts, ledger, reversals
from hero_onboarding.store.checkouts import CheckoutStatus
from hero_onboarding.store.ledger import EntryKind, LedgerEntry
from hero_onboarding.store.reversals import Reversal, ReversalKind
from hero_onboarding.store.users import User
from tests.admin_kit import running_admin, short_socket_dir
from tests.conftest import balance_of, open_checkout, register
from tests.stripe_events import (
    charge,
    charge_refunded,
    checkout_event,
    event,
    new_id,
    refund,
    refund_event,
)


async def deliver(store: Store, evt: dict[str, Any], *, now: int | None = None) -> Fulfilment:
    return await fulfil(store, normalise_event(evt), now=now)


async def paid(store: Store, user: User, amount: int = 1000) -> tuple[dict[str, Any], str]:
    """A paid session of a checkout we opened for `user`, and its payment intent."""
    pi = new_id("pi")
    evt = checkout_event("checkout.session.completed", sid=user.sid, amount=amount,
                         payment_intent=pi)  # fmt: skip
    await open_checkout(store, user.sid, evt["data"]["object"]["id"], amount)
    return evt, pi


async def rows(store: Store, sid: str) -> list[tuple[str, str, int, str | None]]:
    """The user's ledger: (kind, external_ref, amount, event_id), oldest first."""
    found = await store.read(partial(ledger.page, sid=sid, limit=100, offset=0))
    return [
        (r.entry.kind.value, r.entry.external_ref, r.entry.amount, r.entry.event_id)
        for r in reversed(found)
    ]


# -- what each outcome says ------------------------------------------------------------------


async def test_a_credit_records_who_what_and_by_which_event(store, user):
    evt, pi = await paid(store, user, 1000)
    result = await deliver(store, evt, now=1_800_000_000)
    assert result == Fulfilment(Outcome.CREDITED, "", sid=user.sid, amount=1000)
    [row] = await store.read(partial(ledger.page, sid=user.sid, limit=10, offset=0))
    assert row.entry == LedgerEntry(
        sid=user.sid, provider="stripe", kind=EntryKind.PURCHASE, external_ref=pi, amount=1000,
        currency="usd", event_id=evt["id"], checkout_id=evt["data"]["object"]["id"],
    )  # fmt: skip
    assert row.created_at == 1_800_000_000
    found = await store.read(
        partial(ledger.find, provider="stripe", kind=EntryKind.PURCHASE, external_ref=pi)
    )
    assert found == row.entry
    assert (
        await store.read(
            partial(ledger.find, provider="stripe", kind=EntryKind.REFUND, external_ref=pi)
        )
        is None
    )
    again = await deliver(store, evt)
    assert again == Fulfilment(Outcome.DUPLICATE, "payment already credited", sid=user.sid)


async def test_fulfil_uses_the_time_it_is_given_or_now(store, user):
    evt, _ = await paid(store, user)
    before = int(time.time())
    await deliver(store, evt)
    [row] = await store.read(partial(ledger.page, sid=user.sid, limit=10, offset=0))
    assert before <= row.created_at <= int(time.time())


async def test_a_refund_is_parked_then_duplicate_then_applied_with_the_purchase(store, user):
    evt, pi = await paid(store, user, 1000)
    created = refund_event("refund.created", payment_intent=pi, amount=300, refund_id="re_p1")
    assert await deliver(store, created) == Fulfilment(
        Outcome.PARKED, f"kept until payment {pi} is credited"
    )
    assert await deliver(store, created) == Fulfilment(
        Outcome.DUPLICATE, "already kept, its payment not credited"
    )
    # A running total naming that refund adds what is new (the total), though the refund it
    # lists is known: the report as a whole changed what is known.
    total = event(
        "charge.refunded",
        charge(payment_intent=pi, amount=1000, amount_refunded=300,
               refunds=[refund(payment_intent=pi, amount=300, refund_id="re_p1")]),
    )  # fmt: skip
    assert (await deliver(store, total)).outcome is Outcome.PARKED
    credited = await deliver(store, evt)
    assert credited == Fulfilment(
        Outcome.CREDITED, "3.00 USD of it already refunded or disputed", sid=user.sid, amount=700
    )
    assert await rows(store, user.sid) == [
        ("purchase", pi, 1000, evt["id"]),
        ("refund", f"{pi}:refund:purchase", -300, evt["id"]),
    ]


async def test_refund_entries_are_named_by_their_cause_and_event(store, user):
    evt, pi = await paid(store, user, 1000)
    await deliver(store, evt)
    named = refund_event("refund.created", payment_intent=pi, amount=100, refund_id="re_n1")
    taken = await deliver(store, named)
    assert taken == Fulfilment(Outcome.REFUNDED, "", sid=user.sid, amount=-100)
    total = charge_refunded(payment_intent=pi, amount=1000, amount_refunded=400)
    assert (await deliver(store, total)).amount == -300
    recorded = refund_event("refund.updated", payment_intent=pi, amount=100, refund_id="re_n1",
                            status="pending")  # fmt: skip
    assert await deliver(store, recorded) == Fulfilment(
        Outcome.RECORDED, "the balance already accounts for it", user.sid
    )
    assert await deliver(store, recorded) == Fulfilment(
        Outcome.DUPLICATE, "already applied", sid=user.sid
    )
    assert await rows(store, user.sid) == [
        ("purchase", pi, 1000, evt["id"]),
        ("refund", f"{pi}:refund:re_n1", -100, named["id"]),
        ("refund", f"{pi}:refund:total-400", -300, total["id"]),
    ]
    known = await store.read(partial(reversals.of_payment, provider="stripe", payment_ref=pi))
    assert {(r.kind, r.ref, r.amount, r.status, r.event_id) for r in known} == {
        (ReversalKind.REFUND, "re_n1", 100, "pending", recorded["id"]),
        (ReversalKind.REFUND_TOTAL, pi, 400, "succeeded", total["id"]),
    }


async def test_a_refund_in_another_currency_names_the_payments_user(store, user):
    evt, pi = await paid(store, user, 1000)
    await deliver(store, evt)
    odd = refund_event("refund.created", payment_intent=pi, amount=400, currency="eur")
    assert await deliver(store, odd) == Fulfilment(
        Outcome.UNMATCHED, "refunded in eur of a payment in usd", sid=user.sid,
        reason=Unmatched.CURRENCY_DIFFERS,
    )  # fmt: skip


async def test_no_balance_in_the_currency_names_the_checkouts_user(store):
    euro = await register(store, "5b2:1111:2222:3333:4444:5555:6666:7777", currency="eur")
    evt, _ = await paid(store, euro, 1000)
    assert await deliver(store, evt) == Fulfilment(
        Outcome.UNMATCHED, "paid in usd, but the balance is kept in eur", sid=euro.sid,
        reason=Unmatched.NO_BALANCE,
    )  # fmt: skip


async def test_one_cause_moving_twice_takes_the_next_free_ref(store, user):
    """`<ref>#n`: an entry of the same kind and cause is already there (here planted)."""
    evt, pi = await paid(store, user, 1000)
    await deliver(store, evt)
    planted = LedgerEntry(user.sid, "stripe", EntryKind.REFUND, f"{pi}:refund:re_t", -1, "usd")
    await store.write(partial(ledger.append, entry=planted, now=1))
    taken = await deliver(
        store, refund_event("refund.created", payment_intent=pi, amount=400, refund_id="re_t")
    )
    assert taken.amount == -399
    assert [(ref, amount) for kind, ref, amount, _ in await rows(store, user.sid)] == [
        (pi, 1000),
        (f"{pi}:refund:re_t", -1),
        (f"{pi}:refund:re_t#2", -399),
    ]
    assert await balance_of(store, user.sid) == 600


@pytest.mark.parametrize(
    "broken",
    [
        {"external_ref": None},
        {"amount": None},
        {"currency": None},
    ],
)
async def test_a_report_without_payment_amount_or_currency_is_a_bug_not_money(store, user, broken):
    for kind in (EventKind.PAID, EventKind.REFUNDED):
        fields = {"checkout_id": "cs_1", "external_ref": "pi_1", "amount": 5, "currency": "usd",
                  "sid": user.sid, "reversal_id": "re_1", **broken}  # fmt: skip
        with pytest.raises(ValueError, match="needs external_ref, amount and currency"):
            await fulfil(store, ProviderEvent("stripe", kind, "evt_b", "x", **fields))


async def test_a_paid_report_without_checkout_is_not_ours(store, user):
    report = ProviderEvent("stripe", EventKind.PAID, "evt_n", "x", checkout_id=None,
                           external_ref="pi_1", amount=5, currency="usd", sid=user.sid)  # fmt: skip
    result = await fulfil(store, report)
    assert (result.outcome, result.reason, result.sid) == (
        Outcome.UNMATCHED,
        Unmatched.NOT_OUR_CHECKOUT,
        None,
    )


async def test_unmatched_details_name_the_checkout_and_the_figures(store, user):
    other = await register(store, "5b2:1111:2222:3333:4444:5555:6666:7777")
    evt, _ = await paid(store, user, 1000)
    session = evt["data"]["object"]
    co = session["id"]
    session.update(client_reference_id=other.sid, metadata={"sid": other.sid})
    assert (await deliver(store, evt)).detail == (
        f"checkout {co} names {other.sid}, but was opened for {user.sid}"
    )
    session.update(client_reference_id=user.sid, metadata={"sid": other.sid})
    assert (await deliver(store, evt)).detail == (
        f"checkout {co} names two users ({user.sid} and {other.sid})"
    )
    session.update(metadata={"sid": user.sid}, amount_total=999)
    assert (await deliver(store, evt)).detail == (
        f"checkout {co} was opened for 10.00 USD, but reports 9.99 USD paid"
    )


@pytest.mark.parametrize(
    ("kind", "outcome"),
    [
        (EventKind.PENDING, Outcome.PENDING),
        (EventKind.FAILED, Outcome.FAILED),
        (EventKind.EXPIRED, Outcome.EXPIRED),
    ],
)
async def test_a_status_report_moves_our_checkout_and_says_so(store, user, kind, outcome):
    await open_checkout(store, user.sid, "cs_s1", 1000)
    report = ProviderEvent("stripe", kind, "evt_s", "x", checkout_id="cs_s1", sid=user.sid)
    assert await fulfil(store, report) == Fulfilment(outcome, "", sid=user.sid)
    found = await store.read(partial(checkouts.get, checkout_id="cs_s1"))
    assert found.status.value == outcome.value
    assert found.completed_at is None
    elsewhere = ProviderEvent("stub", kind, "evt_s", "x", checkout_id="cs_s1", sid=user.sid)
    assert (await fulfil(store, elsewhere)).detail == "no open checkout of ours changed"
    none = ProviderEvent("stripe", kind, "evt_s", "x", checkout_id=None)
    assert (await fulfil(store, none)).detail == "no open checkout of ours changed"


async def test_unknown_and_ignored_reports_carry_their_note(store, user):
    unknown = ProviderEvent("stripe", EventKind.UNKNOWN, "e", "x", note="why not")
    assert await fulfil(store, unknown) == Fulfilment(
        Outcome.UNMATCHED, "why not", reason=Unmatched.UNKNOWN_STATE
    )
    ignored = ProviderEvent("stripe", EventKind.IGNORED, "e", "x", note="not ours")
    assert await fulfil(store, ignored) == Fulfilment(Outcome.IGNORED, "not ours")


# -- checkouts.advance: only forward ----------------------------------------------------------

_FORWARD = {
    CheckoutStatus.PENDING: {CheckoutStatus.OPEN},
    CheckoutStatus.COMPLETE: {
        CheckoutStatus.OPEN, CheckoutStatus.PENDING, CheckoutStatus.FAILED, CheckoutStatus.EXPIRED
    },
    CheckoutStatus.FAILED: {CheckoutStatus.OPEN, CheckoutStatus.PENDING},
    CheckoutStatus.EXPIRED: {CheckoutStatus.OPEN},
}  # fmt: skip


@pytest.mark.parametrize("target", list(_FORWARD))
async def test_advance_moves_a_checkout_only_forward(store, user, target):
    for start in CheckoutStatus:
        co = f"cs_{start.value}_{target.value}"
        await open_checkout(store, user.sid, co, 1000)
        await store.write(
            lambda c, co=co, start=start: c.execute(
                "UPDATE checkout_sessions SET status = ? WHERE id = ?", (start.value, co)
            )
        )
        moved = await store.write(
            partial(checkouts.advance, provider="stripe", checkout_id=co, status=target, now=77)
        )
        found = await store.read(partial(checkouts.get, checkout_id=co))
        expected = start in _FORWARD[target]
        assert moved is expected, (start, target)
        assert found.status is (target if expected else start)
        done = expected and target is CheckoutStatus.COMPLETE
        assert found.completed_at == (77 if done else None)
        other = await store.write(
            partial(checkouts.advance, provider="stub", checkout_id=co, status=target, now=78)
        )
        assert other is False


# -- what a payment's refunds and disputes imply ---------------------------------------------


def rev(kind: ReversalKind, amount: int, active: bool = True, ref: str = "r") -> Reversal:
    return Reversal("stripe", kind, ref, "pi_1", amount, "usd", active, "s", "evt_1")


REFUND, TOTAL, DISPUTE = ReversalKind.REFUND, ReversalKind.REFUND_TOTAL, ReversalKind.DISPUTE


@pytest.mark.parametrize(
    ("known", "targets"),
    [
        ([], (0, 0)),
        ([rev(REFUND, 300)], (300, 0)),
        ([rev(REFUND, 300, active=False)], (0, 0)),
        ([rev(REFUND, 300, ref="a"), rev(REFUND, 200, ref="b")], (500, 0)),
        ([rev(REFUND, 1000)], (1000, 0)),
        ([rev(REFUND, 1001)], (1000, 0)),
        ([rev(TOTAL, 400)], (400, 0)),
        ([rev(TOTAL, 400), rev(TOTAL, 600, ref="t2")], (600, 0)),
        ([rev(TOTAL, 400), rev(REFUND, 400)], (400, 0)),
        ([rev(TOTAL, 400), rev(REFUND, 300)], (400, 0)),
        ([rev(TOTAL, 400), rev(REFUND, 300, active=False)], (100, 0)),
        ([rev(TOTAL, 200), rev(REFUND, 300)], (300, 0)),
        ([rev(DISPUTE, 700)], (0, 700)),
        ([rev(DISPUTE, 700, active=False)], (0, 0)),
        ([rev(DISPUTE, 1000), rev(REFUND, 600)], (600, 400)),
        ([rev(DISPUTE, 300, ref="a"), rev(DISPUTE, 300, ref="b")], (0, 600)),
        ([rev(DISPUTE, 1000), rev(REFUND, 1000)], (1000, 0)),
    ],
)
def test_reversal_targets(known, targets):
    assert reversal_targets(1000, known) == targets


def test_merge_keeps_what_is_known_and_the_latest_report():
    total = rev(TOTAL, 400)
    assert merge(None, total) is total
    assert merge(total, rev(TOTAL, 400)) is None
    assert merge(total, rev(TOTAL, 300)) is None
    grown = merge(total, Reversal("stripe", TOTAL, "r", "pi_1", 401, "usd", True, "x", "evt_2"))
    assert grown is not None
    assert (grown.amount, grown.event_id, grown.status) == (401, "evt_2", "s")

    pending = Reversal("stripe", REFUND, "re", "pi_1", 300, "usd", True, "pending", "evt_1")
    same = Reversal("stripe", REFUND, "re", "pi_1", 999, "usd", True, "pending", "evt_2")
    assert merge(pending, same) is None
    done = Reversal("stripe", REFUND, "re", "pi_1", 999, "usd", True, "succeeded", "evt_3")
    assert merge(pending, done) == Reversal(
        "stripe", REFUND, "re", "pi_1", 300, "usd", True, "succeeded", "evt_3"
    )
    failed = Reversal("stripe", REFUND, "re", "pi_1", 300, "usd", False, "failed", "evt_4")
    assert merge(pending, failed) == failed
    assert merge(failed, done) is None  # a failed refund never comes back to life


# -- the store's filters ---------------------------------------------------------------------


async def test_ledger_page_filters_by_sid_kind_and_time_and_keeps_row_ids(store, user):
    other = await register(store, "5b2:1111:2222:3333:4444:5555:6666:7777")
    entries = [
        (user.sid, EntryKind.ADJUSTMENT, "a1", 5, 100),
        (user.sid, EntryKind.PURCHASE, "p1", 7, 200),
        (other.sid, EntryKind.ADJUSTMENT, "a2", 9, 300),
    ]
    for sid, kind, ref, amount, now in entries:
        entry = LedgerEntry(sid, "admin", kind, ref, amount, "usd")
        await store.write(partial(ledger.append, entry=entry, now=now))

    async def refs(**filters: Any) -> list[tuple[int, str, int]]:
        found = await store.read(partial(ledger.page, limit=10, offset=0, **filters))
        return [(r.id, r.entry.external_ref, r.created_at) for r in found]

    assert await refs() == [(3, "a2", 300), (2, "p1", 200), (1, "a1", 100)]
    assert await refs(sid=user.sid) == [(2, "p1", 200), (1, "a1", 100)]
    assert await refs(kind=EntryKind.ADJUSTMENT) == [(3, "a2", 300), (1, "a1", 100)]
    assert await refs(since=200) == [(3, "a2", 300), (2, "p1", 200)]
    assert await refs(sid=user.sid, kind=EntryKind.ADJUSTMENT, since=100) == [(1, "a1", 100)]
    [found] = await store.read(partial(ledger.page, sid=other.sid, limit=1, offset=0))
    assert found.entry == LedgerEntry(other.sid, "admin", EntryKind.ADJUSTMENT, "a2", 9, "usd")
    assert await store.read(ledger.count) == 3


async def test_open_disputes_are_oldest_first_and_paged(store, user):
    for n, ref in enumerate(["dp_b", "dp_a", "dp_c"]):
        await store.write(partial(reversals.put, reversal=rev(DISPUTE, 10, ref=ref), now=100 + n))
    await store.write(partial(reversals.put, reversal=rev(DISPUTE, 10, False, "dp_z"), now=1))
    page = await store.read(partial(reversals.open_disputes, limit=2, offset=1))
    assert [r.ref for r in page] == ["dp_a", "dp_c"]
    assert (page[0].first_seen, page[0].updated_at) == (101, 101)
    await store.write(partial(reversals.put, reversal=rev(DISPUTE, 10, False, "dp_a"), now=500))
    gone = await store.read(partial(reversals.get, provider="stripe", kind=DISPUTE, ref="dp_a"))
    assert (gone.active, gone.first_seen, gone.updated_at) == (False, 101, 500)


async def test_admin_payment_list_filters_by_kind_sid_and_time(settings, store, user):
    other = await register(store, "5b2:1111:2222:3333:4444:5555:6666:7777")
    for sid, kind, ref, amount, now in [
        (user.sid, EntryKind.ADJUSTMENT, "a1", 5, 100),
        (user.sid, EntryKind.PURCHASE, "p1", 7, 200),
        (other.sid, EntryKind.PURCHASE, "p2", 9, 300),
    ]:
        entry = LedgerEntry(sid, "admin", kind, ref, amount, "usd")
        await store.write(partial(ledger.append, entry=entry, now=now))
    admin_settings = replace(settings, socket_dir=short_socket_dir())
    async with running_admin(admin_settings, store) as admin:

        async def listed(**params: Any) -> list[str]:
            answer = await admin.client.call("payment_list", params)
            return [p["external_ref"] for p in answer["payments"]]

        assert await listed() == ["p2", "p1", "a1"]
        assert await listed(kind="purchase") == ["p2", "p1"]
        assert await listed(kind="adjustment") == ["a1"]
        assert await listed(sid=user.sid) == ["p1", "a1"]
        assert await listed(since=200) == ["p2", "p1"]
        assert await listed(kind="purchase", sid=user.sid, since=200) == ["p1"]
