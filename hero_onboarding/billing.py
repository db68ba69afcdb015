"""Fulfilment: the one path from a provider's report of a payment to the ledger.

The webhook, the return page and reconciliation all call this, in any order, any number of
times, concurrently: the ledger's uniqueness makes every call after the first a no-op, so
whichever arrives first credits and the rest report `duplicate`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from functools import partial

import apsw

from .payments.base import EventKind, ProviderEvent
from .store import Store, balances, checkouts, ledger
from .store.checkouts import CheckoutStatus
from .store.ledger import EntryKind, LedgerEntry, LedgerError


class Outcome(StrEnum):
    CREDITED = "credited"
    DUPLICATE = "duplicate"  # already recorded: nothing changed
    PENDING = "pending"
    FAILED = "failed"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    UNMATCHED = "unmatched"  # ours to act on, but we cannot tell whose (an operator must look)
    IGNORED = "ignored"  # nothing for us to do


@dataclass(frozen=True, slots=True)
class Fulfilment:
    outcome: Outcome
    detail: str = ""
    sid: str | None = None
    amount: int = 0  # how much the balance moved in this call (signed minor units)


_CHECKOUT_STATUS: dict[EventKind, tuple[CheckoutStatus, Outcome]] = {
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
    if event.kind is EventKind.REFUNDED:
        return _debit_refund(conn, event, now)
    if event.kind in _CHECKOUT_STATUS:
        status, outcome = _CHECKOUT_STATUS[event.kind]
        moved = event.checkout_id is not None and checkouts.advance(
            conn, event.provider, event.checkout_id, status, now=now
        )
        detail = "" if moved else "no open checkout of ours changed"
        return Fulfilment(outcome, detail, sid=event.sid)
    return Fulfilment(Outcome.IGNORED, event.note)


def _credit_purchase(conn: apsw.Connection, event: ProviderEvent, now: int) -> Fulfilment:
    if event.external_ref is None or event.amount is None or event.currency is None:
        raise ValueError("a paid event needs external_ref, amount and currency")
    if event.sid is None:
        return Fulfilment(Outcome.IGNORED, "no client reference: not a checkout of ours")
    entry = LedgerEntry(
        sid=event.sid,
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
        return Fulfilment(Outcome.UNMATCHED, _why_no_balance(conn, event), sid=event.sid)
    if event.checkout_id is not None:
        checkouts.advance(conn, event.provider, event.checkout_id, CheckoutStatus.COMPLETE, now=now)
    if not credited:
        return Fulfilment(Outcome.DUPLICATE, "payment already credited", sid=event.sid)
    return Fulfilment(Outcome.CREDITED, sid=event.sid, amount=event.amount)


def _why_no_balance(conn: apsw.Connection, event: ProviderEvent) -> str:
    balance = balances.get(conn, event.sid or "")  # every user has exactly one billing row
    if balance is None:
        return f"no user with sid {event.sid!r}"
    return f"paid in {event.currency}, but the balance is kept in {balance.currency}"


def _debit_refund(conn: apsw.Connection, event: ProviderEvent, now: int) -> Fulfilment:
    if event.external_ref is None or event.amount is None or event.currency is None:
        raise ValueError("a refund event needs external_ref, amount and currency")
    purchase = ledger.find(conn, event.provider, EntryKind.PURCHASE, event.external_ref)
    if purchase is None:
        return Fulfilment(Outcome.UNMATCHED, "refund of a payment we never credited")
    if purchase.currency != event.currency:
        return Fulfilment(
            Outcome.UNMATCHED,
            f"refund in {event.currency} of a payment in {purchase.currency}",
            sid=purchase.sid,
        )
    # Never take back more than the payment credited, whatever the running total says.
    refunded_total = min(event.amount, purchase.amount)
    step = refunded_total - ledger.refunded_so_far(conn, event.provider, event.external_ref)
    if step <= 0:
        return Fulfilment(Outcome.DUPLICATE, "refund already recorded", sid=purchase.sid)
    entry = LedgerEntry(
        sid=purchase.sid,
        provider=event.provider,
        kind=EntryKind.REFUND,
        external_ref=ledger.refund_ref(event.external_ref, refunded_total),
        amount=-step,
        currency=event.currency,
        event_id=event.event_id,
        checkout_id=purchase.checkout_id,
    )
    ledger.append(conn, entry, now=now)
    return Fulfilment(Outcome.REFUNDED, sid=purchase.sid, amount=-step)
