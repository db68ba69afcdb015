"""Buying credits: the dashboard, POST /payment/intent, and the pages the buyer comes back to.

The amount a buyer is credited is always the provider's figure for a paid checkout, never one
from a form. The return page reads the checkout back from the provider and fulfils it through
billing.fulfil, the same path as the webhook: whichever arrives first credits, the other finds
the payment already in the ledger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from functools import partial
from typing import Final

import apsw
from aiohttp import web

from ..billing import Outcome, fulfil
from ..config import CHECKOUT_EXPIRY_MARGIN_S, STRIPE_MIN_CHECKOUT_S, Settings
from ..errors import InputError
from ..money import format_amount, parse_major, parse_minor
from ..payments.base import CheckoutRequest, EventKind, ProviderError, ProviderEvent
from ..store import balances, checkouts, ledger
from ..store.balances import Balance
from ..store.checkouts import CheckoutSession, CheckoutStatus
from ..store.ledger import EntryKind, RecordedEntry
from ..store.web_sessions import WebSession
from . import form_nonce
from .guards import authenticated, current_user
from .keys import CHECKOUT_LOCKS, CHECKOUTS, CLOCK, METRICS, RECENT_ASKS, SETTINGS, STORE
from .pages import message_page, render

log = logging.getLogger(__name__)

PRESET_AMOUNTS: Final = (500, 1000, 2500, 5000, 10000)
HISTORY_ROWS: Final = 50
MAX_ID: Final = 255
# The dashboard's form carries a nonce: a double-submitted form is one checkout, not two.
NONCE_FIELD: Final = "checkout_nonce"
RATE_WINDOW_S: Final = 3600
NOT_SOLD: Final = (
    "Your credits are kept in a currency this service no longer sells, so nothing can be "
    "bought and nothing was charged. Ask the operator to move your balance."
)
RETURN_REFRESH_S: Final = 3
# The return page is feedback; the webhook credits regardless. It waits this long for Stripe.
READ_BACK_TIMEOUT_S: Final = 5.0
IN_PROGRESS: Final = (CheckoutStatus.OPEN, CheckoutStatus.PENDING)

routes = web.RouteTableDef()


class AmountError(InputError, ValueError, http_status=400):
    """An amount a buyer asked for that we will not charge; the message says why."""


async def dashboard(
    request: web.Request,
    user: WebSession,
    *,
    error: str | None = None,
    typed_amount: str = "",
    status: int = 200,
) -> web.Response:
    """Balance, what can be bought, what was bought, and what is still settling."""
    settings = request.app[SETTINGS]
    balance, history, pending = await request.app[STORE].read(partial(_account_of, sid=user.sid))
    sold = settings.currency
    return await render(
        request,
        "home.html",
        status,
        balance=format_amount(balance.credit_balance, balance.currency) if balance else "unknown",
        owing=balance is not None and balance.credit_balance < 0,
        entry_labels=ENTRY_LABELS,
        can_buy=_sells_for(balance, sold),
        not_sold=NOT_SOLD,
        presets=[
            (amount, format_amount(amount, sold))
            for amount in PRESET_AMOUNTS
            if settings.amount_min <= amount <= settings.amount_max
        ],
        allowed=_allowed_range(request),
        currency=sold.upper(),
        history=history,
        pending=pending,
        format_amount=format_amount,
        nonce=form_nonce.issue(int(request.app[CLOCK]())),
        nonce_field=NONCE_FIELD,
        error=error,
        typed_amount=typed_amount,
    )


# What each ledger kind means to the buyer reading their history.
ENTRY_LABELS: Final = {
    EntryKind.PURCHASE: "Purchase",
    EntryKind.REFUND: "Refund",
    EntryKind.REFUND_REVERSAL: "Refund failed: credits back",
    EntryKind.DISPUTE: "Payment disputed",
    EntryKind.DISPUTE_REVERSAL: "Dispute closed in your favour: credits back",
    EntryKind.ADJUSTMENT: "Adjustment",
}


def _sells_for(balance: Balance | None, currency: str) -> bool:
    """Whether buying in `currency` can credit this balance: the ledger keeps one currency per
    user, and never takes money it cannot put on the balance."""
    return balance is None or balance.currency == currency


def _account_of(
    conn: apsw.Connection, sid: str
) -> tuple[Balance | None, list[RecordedEntry], list[CheckoutSession]]:
    """One read: the balance, the ledger that explains it, the payments still settling."""
    return (
        balances.get(conn, sid),
        ledger.page(conn, sid=sid, limit=HISTORY_ROWS, offset=0),
        checkouts.of_user(conn, sid, (CheckoutStatus.PENDING,), limit=HISTORY_ROWS),
    )


@routes.post("/payment/intent")
@authenticated
async def start_checkout(request: web.Request) -> web.Response:
    """Open a hosted checkout for the amount asked and send the buyer there (303)."""
    app, user = request.app, current_user(request)
    settings = app[SETTINGS]
    form = await request.post()  # read (and CSRF-checked) by the middleware already
    try:
        amount = _amount_asked(request, form)
    except AmountError as exc:
        typed = form.get("custom_amount")
        return await dashboard(
            request,
            user,
            error=str(exc),
            typed_amount=typed[:40] if isinstance(typed, str) else "",
            status=400,
        )

    balance = await app[STORE].read(partial(balances.get, sid=user.sid))
    if not _sells_for(balance, settings.currency):
        assert balance is not None
        log.warning(
            "checkout refused: %s keeps %s, this service sells %s",
            user.sid,
            balance.currency,
            settings.currency,
        )
        return await message_page(request, 409, "Credits cannot be bought here", NOT_SOLD)
    async with app[CHECKOUT_LOCKS].holding(user.sid):  # one checkout at a time per user
        return await _open_checkout(request, user, amount, form.get(NONCE_FIELD))


async def _open_checkout(
    request: web.Request, user: WebSession, amount: int, sent_nonce: object
) -> web.Response:
    app = request.app
    settings, provider, metrics = app[SETTINGS], app[CHECKOUTS], app[METRICS]
    now = int(app[CLOCK]())
    opened, oldest = await app[STORE].read(
        partial(checkouts.opened_since, sid=user.sid, since=now - RATE_WINDOW_S)
    )
    if opened >= settings.checkout_max_per_hour:
        response = await message_page(
            request,
            429,
            "Too many payments started",
            "You started many payments in the last hour. Finish or abandon those, and try "
            "again later.",
        )
        response.headers["Retry-After"] = str(max(1, (oldest or now) + RATE_WINDOW_S - now))
        return response

    nonce = form_nonce.accept(sent_nonce, now=now, reusable_for_s=_nonce_reuse_s(settings))
    checkout_request = CheckoutRequest(
        sid=user.sid,
        address=user.mycelium_address,
        amount=amount,
        currency=settings.currency,
        success_url=f"{settings.public_url}/payment/return?session_id={{CHECKOUT_SESSION_ID}}",
        cancel_url=f"{settings.public_url}/payment/cancel",
        expires_at=nonce.issued_at + settings.checkout_ttl_s,
        idempotency_key=f"hero-checkout:{user.sid}:{nonce.value}:{amount}",
    )
    try:
        with metrics.provider_call("create"):
            checkout = await provider.create_checkout(checkout_request)
    except ProviderError as exc:
        metrics.checkout_failures.labels(provider.name).inc()
        log.warning("checkout of %d for %s not opened: %s", amount, user.sid, exc)
        return await message_page(
            request,
            502,
            "Payments are unavailable",
            "We could not reach our payment provider, so nothing was charged. Try again in a "
            "minute.",
        )

    row = CheckoutSession(
        id=checkout.id,
        sid=user.sid,
        provider=provider.name,
        amount=amount,
        currency=settings.currency,
        status=CheckoutStatus.OPEN,
        url=checkout.url,
        created_at=now,
        expires_at=checkout.expires_at,
    )
    if not await app[STORE].write(partial(checkouts.insert, checkout=row)):
        # The same form sent twice: the provider gave back the checkout it opened the first
        # time. Send the buyer there only if it can still be paid.
        known = await app[STORE].read(partial(checkouts.get, checkout_id=checkout.id))
        if known is not None and known.status is not CheckoutStatus.OPEN:
            raise web.HTTPSeeOther(f"/payment/return?session_id={checkout.id}")
    else:
        metrics.checkouts_created.labels(provider.name).inc()
        log.info("checkout %s opened: %d %s for %s", checkout.id, amount, row.currency, user.sid)
    raise web.HTTPSeeOther(checkout.url)


def _nonce_reuse_s(settings: Settings) -> int:
    """How old a form may be for its checkout to still get Stripe's minimum lifetime."""
    return settings.checkout_ttl_s - STRIPE_MIN_CHECKOUT_S - CHECKOUT_EXPIRY_MARGIN_S


@routes.get("/payment/return")
@authenticated
async def payment_return(request: web.Request) -> web.Response:
    """Where the provider sends a buyer who paid: the outcome, and the balance it left."""
    user = current_user(request)
    checkout_id = request.query.get("session_id", "")[:MAX_ID]
    row = await request.app[STORE].read(partial(checkouts.get, checkout_id=checkout_id))
    if row is None or row.sid != user.sid:  # someone else's is as unknown as a made-up one
        return await message_page(
            request,
            404,
            "No such payment",
            "We have no payment of yours with that reference.",
            link="/",
            link_text="Back to your credits",
        )
    if row.status in IN_PROGRESS:
        row = await _ask_provider(request, row)
    balance = await request.app[STORE].read(partial(balances.get, sid=user.sid))
    return await render(
        request,
        "payment_return.html",
        checkout=row,
        amount=format_amount(row.amount, row.currency),
        balance=format_amount(balance.credit_balance, balance.currency) if balance else "unknown",
        refresh_s=RETURN_REFRESH_S if _worth_refreshing(request, row) else None,
    )


def _worth_refreshing(request: web.Request, row: CheckoutSession) -> bool:
    """Refresh the page by itself only while news can come within seconds: an open checkout
    of our current provider, not yet expired. A bank payment settles in days: no refresh."""
    return (
        row.status is CheckoutStatus.OPEN
        and row.provider == request.app[CHECKOUTS].name
        and (row.expires_at is None or request.app[CLOCK]() < row.expires_at)
    )


@routes.get("/payment/cancel")
@authenticated
async def payment_cancel(request: web.Request) -> web.Response:
    """Where a buyer lands who left the provider's page without paying."""
    user = current_user(request)
    balance = await request.app[STORE].read(partial(balances.get, sid=user.sid))
    shown = format_amount(balance.credit_balance, balance.currency) if balance else "unknown"
    return await message_page(
        request,
        200,
        "Payment cancelled",
        f"You left the payment page, so nothing was charged. Your balance is still {shown}.",
        error=False,
        link="/",
        link_text="Back to your credits",
    )


async def _ask_provider(request: web.Request, row: CheckoutSession) -> CheckoutSession:
    """Read the checkout back from the provider and fulfil what it says; the row as it is now.

    Failing to ask is not an error for the buyer: the page says "processing" and the webhook
    will credit the payment whatever happens here.
    """
    app = request.app
    provider, metrics = app[CHECKOUTS], app[METRICS]
    if row.provider != provider.name or not app[RECENT_ASKS].may_ask(row.id, time.monotonic()):
        return row
    try:
        with metrics.provider_call("retrieve"):
            async with asyncio.timeout(READ_BACK_TIMEOUT_S):
                event = await provider.retrieve_checkout(row.id)
    except (ProviderError, TimeoutError) as exc:
        log.warning("could not read checkout %s back: %s", row.id, exc or "timed out")
        return row
    if event is None:
        return row
    if event.kind is EventKind.IGNORED:
        log.warning("checkout %s read back, nothing to act on: %s", row.id, event.note)
        return row
    if not _is_about(event, row):
        log.error(
            "checkout %s read back as %s for sid %s: not ours, not applied",
            row.id,
            event.checkout_id,
            event.sid,
        )
        return row
    result = await fulfil(app[STORE], event, now=int(app[CLOCK]()))
    metrics.fulfilled("return", result, event.currency)
    log.log(
        logging.WARNING if result.outcome is Outcome.UNMATCHED else logging.INFO,
        "checkout %s read back: %s (%s%s)",
        row.id,
        event.kind,
        result.outcome,
        f": {result.detail}" if result.detail else "",
    )
    found = await app[STORE].read(partial(checkouts.get, checkout_id=row.id))
    return found or row


def _is_about(event: ProviderEvent, row: CheckoutSession) -> bool:
    """The provider's answer concerns this checkout and this buyer (a paid one must say so)."""
    return event.checkout_id == row.id and event.sid in (row.sid, None)


def _amount_asked(request: web.Request, form: Mapping[str, object]) -> int:
    """The amount in minor units, within the configured range.

    From `?amount=` or a form field `amount` (minor units, what the preset buttons send), or
    else `custom_amount` as a person types it (whole units, "12.50").
    """
    settings = request.app[SETTINGS]
    minor = request.query.get("amount") or form.get("amount")
    major = form.get("custom_amount")
    try:
        if isinstance(minor, str) and minor.strip():
            amount = parse_minor(minor[:40])
        elif isinstance(major, str) and major.strip():
            amount = parse_major(major[:40], settings.currency)
        else:
            raise AmountError(f"Choose an amount {_allowed_range(request)}.")
    except AmountError:
        raise
    except ValueError as exc:
        raise AmountError(f"The amount {exc}. Choose one {_allowed_range(request)}.") from None
    if not settings.amount_min <= amount <= settings.amount_max:
        shown = format_amount(amount, settings.currency)
        raise AmountError(f"{shown} cannot be bought here: choose {_allowed_range(request)}.")
    return amount


def _allowed_range(request: web.Request) -> str:
    settings = request.app[SETTINGS]
    low = format_amount(settings.amount_min, settings.currency)
    high = format_amount(settings.amount_max, settings.currency)
    return f"between {low} and {high}"
