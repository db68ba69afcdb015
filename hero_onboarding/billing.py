"""Fulfilment: the one path from a provider's report about money to the ledger.

The webhook, the return page and reconciliation all call this, in any order, any number of
times, concurrently: every call runs in one write transaction, the ledger's uniqueness makes a
repeated credit a no-op, and refunds and disputes are kept as facts (store/reversals.py) from
which the ledger's share of them is derived. So whichever report arrives first acts, the rest
report `duplicate`, and a refund or dispute reported before its purchase is applied in the
transaction that credits the purchase.

Only our own checkouts are credited: a paid report counts when `checkout_sessions` holds its
checkout, opened by this service for the user, amount and currency the report names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import partial
from typing import Final

import apsw

from .money import format_amount
from .payments.base import REVERSAL_KINDS, EventKind, ProviderEvent
from .store import Store, balances, checkouts, ledger, reversals
from .store.checkouts import CheckoutSession, CheckoutStatus
from .store.ledger import EntryKind, LedgerEntry, LedgerError
from .store.reversals import Reversal, ReversalKind


class Outcome(StrEnum):
    CREDITED = "credited"
    DUPLICATE = "duplicate"  # already recorded: nothing changed
    PENDING = "pending"
    FAILED = "failed"
    EXPIRED = "expired"
    REFUNDED = "refunded"  # a refund took credits back
    REFUND_REVERSED = "refund_reversed"  # a refund failed: its credits were given back
    DISPUTED = "disputed"  # a dispute took credits back
    DISPUTE_REVERSED = "dispute_reversed"  # a dispute was won: its credits were given back
    RECORDED = "recorded"  # a refund or dispute kept; the balance already said what it means
    PARKED = "parked"  # a refund or dispute of a payment not credited (yet), kept until it is
    UNMATCHED = "unmatched"  # about money, but not ours or not applicable: a person must look
    IGNORED = "ignored"  # nothing for us to do


class Unmatched(StrEnum):
    """Why a verified report was not applied (a short fixed set: it labels a metric)."""

    NOT_OUR_CHECKOUT = "not_our_checkout"
    REFERENCES_DISAGREE = "references_disagree"
    OTHER_USER = "other_user"
    AMOUNT_DIFFERS = "amount_differs"
    NO_BALANCE = "no_balance"
    CURRENCY_DIFFERS = "currency_differs"
    UNKNOWN_STATE = "unknown_state"


@dataclass(frozen=True, slots=True)
class Fulfilment:
    outcome: Outcome
    detail: str = ""
    sid: str | None = None
    amount: int = 0  # how much the balance moved in this call (signed minor units)
    reason: Unmatched | None = None  # set with UNMATCHED


# Outcomes that moved (or, for a purchase netted to zero by earlier refunds, recorded) money:
# what reconciliation audits and reports as changed.
MOVED_MONEY: Final = frozenset({
    Outcome.CREDITED, Outcome.REFUNDED, Outcome.REFUND_REVERSED, Outcome.DISPUTED,
    Outcome.DISPUTE_REVERSED,
})  # fmt: skip
# Outcomes of a report that was applied before, or is kept until its payment is credited.
ALREADY_KNOWN: Final = frozenset({Outcome.DUPLICATE, Outcome.RECORDED, Outcome.PARKED})

# What a reversal that moved money is called, by the kind of report that moved it.
_MOVED: Final[dict[EventKind, Outcome]] = {
    EventKind.REFUNDED: Outcome.REFUNDED,
    EventKind.REFUND_FAILED: Outcome.REFUND_REVERSED,
    EventKind.DISPUTED: Outcome.DISPUTED,
    EventKind.DISPUTE_WON: Outcome.DISPUTE_REVERSED,
}
# Each share of a payment the ledger gives back: the kind that takes, and the kind that returns.
_REFUND_KINDS: Final = (EntryKind.REFUND, EntryKind.REFUND_REVERSAL)
_DISPUTE_KINDS: Final = (EntryKind.DISPUTE, EntryKind.DISPUTE_REVERSAL)

_CHECKOUT_STATUS: Final[dict[EventKind, tuple[CheckoutStatus, Outcome]]] = {
    EventKind.PENDING: (CheckoutStatus.PENDING, Outcome.PENDING),
    EventKind.FAILED: (CheckoutStatus.FAILED, Outcome.FAILED),
    EventKind.EXPIRED: (CheckoutStatus.EXPIRED, Outcome.EXPIRED),
}


async def fulfil(store: Store, event: ProviderEvent, *, now: int | None = None) -> Fulfilment:
    """Apply `event` in its own durable transaction."""
    return await store.write(
        partial(apply_event, event=event, now=int(time.time()) if now is None else now)
    )


def apply_event(conn: apsw.Connection, event: ProviderEvent, *, now: int) -> Fulfilment:
    """Apply `event` inside the caller's transaction (so callers can record more with it)."""
    if event.kind is EventKind.PAID:
        return _credit_purchase(conn, event, now)
    if event.kind in REVERSAL_KINDS:
        return _apply_reversal(conn, event, now)
    if event.kind in _CHECKOUT_STATUS:
        status, outcome = _CHECKOUT_STATUS[event.kind]
        moved = event.checkout_id is not None and checkouts.advance(
            conn, event.provider, event.checkout_id, status, now=now
        )
        detail = "" if moved else "no open checkout of ours changed"
        return Fulfilment(outcome, detail, sid=event.sid)
    if event.kind is EventKind.UNKNOWN:
        return _unmatched(Unmatched.UNKNOWN_STATE, event.note)
    return Fulfilment(Outcome.IGNORED, event.note)


def _unmatched(reason: Unmatched, detail: str, sid: str | None = None) -> Fulfilment:
    return Fulfilment(Outcome.UNMATCHED, detail, sid=sid, reason=reason)


# -- purchases -------------------------------------------------------------------------------


def _credit_purchase(conn: apsw.Connection, event: ProviderEvent, now: int) -> Fulfilment:
    if event.external_ref is None or event.amount is None or event.currency is None:
        raise ValueError("a paid event needs external_ref, amount and currency")
    checkout = checkouts.get(conn, event.checkout_id) if event.checkout_id else None
    refusal = not_our_checkout(event, checkout)
    if refusal is not None:
        return refusal
    assert checkout is not None
    entry = LedgerEntry(
        sid=checkout.sid,
        provider=event.provider,
        kind=EntryKind.PURCHASE,
        external_ref=event.external_ref,
        amount=event.amount,
        currency=event.currency,
        event_id=event.event_id,
        checkout_id=event.checkout_id,
    )
    try:
        credited = ledger.append(conn, entry, now=now)
    except LedgerError:  # the schema refused it: find out why, off the hot path
        return _unmatched(Unmatched.NO_BALANCE, _why_no_balance(conn, entry), checkout.sid)
    checkouts.advance(conn, event.provider, checkout.id, CheckoutStatus.COMPLETE, now=now)
    if not credited:
        return Fulfilment(Outcome.DUPLICATE, "payment already credited", sid=checkout.sid)
    taken = _settle(conn, entry, cause="purchase", event_id=event.event_id, now=now)
    detail = (
        f"{format_amount(-taken, entry.currency)} of it already refunded or disputed"
        if taken
        else ""
    )
    return Fulfilment(Outcome.CREDITED, detail, sid=checkout.sid, amount=entry.amount + taken)


def not_our_checkout(event: ProviderEvent, checkout: CheckoutSession | None) -> Fulfilment | None:
    """Why a paid report must not be credited, or None when it is a checkout we opened.

    Anyone can create a session on the account (a Payment Link lets the buyer choose its
    client_reference_id), so what the session says about the user counts for nothing: the
    row we wrote when we opened the checkout decides who is credited, and for what.
    """
    if checkout is None or checkout.provider != event.provider:
        return _unmatched(
            Unmatched.NOT_OUR_CHECKOUT, f"checkout {event.checkout_id} was not opened by us"
        )
    if event.conflicting_sid is not None:
        return _unmatched(
            Unmatched.REFERENCES_DISAGREE,
            f"checkout {checkout.id} names two users ({event.sid} and {event.conflicting_sid})",
        )
    if event.sid is not None and event.sid != checkout.sid:
        return _unmatched(
            Unmatched.OTHER_USER,
            f"checkout {checkout.id} names {event.sid}, but was opened for {checkout.sid}",
        )
    if (event.amount, event.currency) != (checkout.amount, checkout.currency):
        paid = format_amount(event.amount or 0, event.currency or "?")
        asked = format_amount(checkout.amount, checkout.currency)
        return _unmatched(
            Unmatched.AMOUNT_DIFFERS,
            f"checkout {checkout.id} was opened for {asked}, but reports {paid} paid",
        )
    return None


def _why_no_balance(conn: apsw.Connection, entry: LedgerEntry) -> str:
    balance = balances.get(conn, entry.sid)  # every user has exactly one billing row
    if balance is None:
        return f"no user with sid {entry.sid!r}"
    return f"paid in {entry.currency}, but the balance is kept in {balance.currency}"


# -- refunds and disputes --------------------------------------------------------------------


def _apply_reversal(conn: apsw.Connection, event: ProviderEvent, now: int) -> Fulfilment:
    changed = False
    for report in (event, *event.parts):
        changed |= _remember(conn, report, now)
    payment = event.external_ref
    assert payment is not None  # as_reversal refused a report without one
    purchase = ledger.find(conn, event.provider, EntryKind.PURCHASE, payment)
    if purchase is None:
        if not changed:
            return Fulfilment(Outcome.DUPLICATE, "already kept, its payment not credited")
        return Fulfilment(Outcome.PARKED, f"kept until payment {payment} is credited")
    if purchase.currency != event.currency:
        return _unmatched(
            Unmatched.CURRENCY_DIFFERS,
            f"{event.kind} in {event.currency} of a payment in {purchase.currency}",
            purchase.sid,
        )
    moved = _settle(conn, purchase, cause=_cause(event), event_id=event.event_id, now=now)
    if moved:
        return Fulfilment(_MOVED[event.kind], sid=purchase.sid, amount=moved)
    if changed:
        return Fulfilment(Outcome.RECORDED, "the balance already accounts for it", purchase.sid)
    return Fulfilment(Outcome.DUPLICATE, "already applied", sid=purchase.sid)


def _remember(conn: apsw.Connection, report: ProviderEvent, now: int) -> bool:
    """Merge one refund or dispute report into what is known; True if that changed."""
    reported = as_reversal(report)
    known = reversals.get(conn, reported.provider, reported.kind, reported.ref)
    merged = merge(known, reported)
    if merged is None:
        return False
    reversals.put(conn, merged, now=now)
    return True


def as_reversal(event: ProviderEvent) -> Reversal:
    """A refund or dispute report as the fact it records."""
    if event.external_ref is None or event.amount is None or event.currency is None:
        raise ValueError("a refund or dispute event needs external_ref, amount and currency")
    if event.reversal_id is None:  # a running total refunded on the payment
        kind, ref = ReversalKind.REFUND_TOTAL, event.external_ref
    elif event.kind in (EventKind.REFUNDED, EventKind.REFUND_FAILED):
        kind, ref = ReversalKind.REFUND, event.reversal_id
    else:
        kind, ref = ReversalKind.DISPUTE, event.reversal_id
    return Reversal(
        provider=event.provider,
        kind=kind,
        ref=ref,
        payment_ref=event.external_ref,
        amount=event.amount,
        currency=event.currency,
        active=event.kind in (EventKind.REFUNDED, EventKind.DISPUTED),
        status=event.status or event.kind.value,
        event_id=event.event_id,
    )


def merge(known: Reversal | None, reported: Reversal) -> Reversal | None:
    """What is known after `reported`, or None when it adds nothing.

    Reports come in any order, so nothing moves backwards: a running total only grows, a
    refund that failed (or a dispute that was won) stays so whatever older snapshot arrives,
    and the amount and payment of a refund or dispute are those first reported.
    """
    if known is None:
        return reported
    if known.kind is ReversalKind.REFUND_TOTAL:
        return (
            replace(known, amount=reported.amount, event_id=reported.event_id)
            if (reported.amount > known.amount)
            else None
        )
    if not known.active or (reported.active and reported.status == known.status):
        return None
    return replace(
        known, active=reported.active, status=reported.status, event_id=reported.event_id
    )


def reversal_targets(paid: int, known: list[Reversal]) -> tuple[int, int]:
    """How much of a payment of `paid` the ledger should hold back: (refunded, disputed).

    Refunds that count are those pending or succeeded, named one by one; a running total
    (a charge's amount refunded) adds what it reports beyond every refund named, counted or
    failed, so one refund reported both ways is taken once. Disputes hold what is still
    credited, never more: a balance goes negative only by what was already spent.
    """
    refunds = [r for r in known if r.kind is ReversalKind.REFUND]
    total = max((r.amount for r in known if r.kind is ReversalKind.REFUND_TOTAL), default=0)
    unnamed = max(0, total - sum(r.amount for r in refunds))
    refunded = min(paid, sum(r.amount for r in refunds if r.active) + unnamed)
    held = sum(r.amount for r in known if r.kind is ReversalKind.DISPUTE and r.active)
    return refunded, min(paid - refunded, held)


def _settle(
    conn: apsw.Connection, purchase: LedgerEntry, *, cause: str, event_id: str, now: int
) -> int:
    """Bring the ledger's refunds and disputes of `purchase` to what is known; the net move.

    The difference between what should be held back and what the ledger holds is appended
    as one entry per share, so however many reports arrive, each changes the balance once.
    """
    known = [
        r
        for r in reversals.of_payment(conn, purchase.provider, purchase.external_ref)
        if r.currency == purchase.currency
    ]
    if not known:  # the usual purchase: nothing reported against it, nothing held back
        return 0
    moved = 0
    for (take, give), target in zip(
        (_REFUND_KINDS, _DISPUTE_KINDS), reversal_targets(purchase.amount, known), strict=True
    ):
        held = -ledger.moved_so_far(conn, purchase.provider, purchase.external_ref, (take, give))
        step = target - held
        if step == 0:
            continue
        kind = take if step > 0 else give
        _append_new(
            conn,
            replace(
                purchase,
                kind=kind,
                external_ref=ledger.reversal_ref(purchase.external_ref, kind, cause),
                amount=-step,
                event_id=event_id,
            ),
            now=now,
        )
        moved -= step
    return moved


def _append_new(conn: apsw.Connection, entry: LedgerEntry, *, now: int) -> None:
    """Append `entry` under its ref, or the first free `<ref>#n` if one cause moved twice."""
    ref, attempt = entry.external_ref, 1
    while not ledger.append(conn, entry, now=now):
        attempt += 1
        entry = replace(entry, external_ref=f"{ref}#{attempt}")


def _cause(event: ProviderEvent) -> str:
    """What moved the ledger, for its entry's ref: the refund or dispute, or the total."""
    return event.reversal_id or f"total-{event.amount}"
