"""POST /webhooks/stripe: verify, fulfil, record, answer — in that order, durably.

The answer is Stripe's cue: 2xx means "done, never send this again", anything else means
"retry later". So we answer 2xx only after the credit (or the decision not to credit) and the
delivery record are committed together, 401 for anything not provably from Stripe, and 500 when
we failed, so Stripe retries until we can take it.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import apsw
from aiohttp import web

from ..billing import Fulfilment, Outcome, apply_event
from ..payments.base import EventKind, InvalidPayload, InvalidSignature, ProviderEvent
from ..store import deliveries
from ..store.db import DISK_ERRORS
from ..store.deliveries import Delivery
from .keys import CLOCK, METRICS, SETTINGS, STORE, STRIPE
from .metrics import UNVERIFIED

log = logging.getLogger(__name__)

_DISPUTES = (EventKind.DISPUTED, EventKind.DISPUTE_WON)

# Every verified delivery gets a 2xx and a row in webhook_deliveries; the log line's level says
# how much an operator should care: unmatched money and disputes need a human, replays and
# foreign events are routine.
_LOG_LEVEL = {
    Outcome.UNMATCHED: logging.WARNING,
    Outcome.DUPLICATE: logging.DEBUG,
    Outcome.IGNORED: logging.DEBUG,
}


async def stripe_webhook(request: web.Request) -> web.Response:
    started = time.perf_counter()
    try:
        return await _handle(request)
    finally:
        request.app[METRICS].webhook_seconds.observe(time.perf_counter() - started)


async def _handle(request: web.Request) -> web.Response:
    app = request.app
    settings, store, parser = app[SETTINGS], app[STORE], app[STRIPE]
    received_at = int(app[CLOCK]())
    provider = parser.name

    if (request.content_length or 0) > settings.webhook_max_bytes:
        return await _too_large(request, received_at)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return await _too_large(request, received_at)

    try:
        event = parser.parse_webhook(body, request.headers)
    except InvalidSignature as exc:
        app[METRICS].signature_failures.inc()
        return await _reject(request, 401, str(exc), received_at=received_at)
    except InvalidPayload as exc:
        return await _reject(request, 400, str(exc), received_at=received_at, verified=True)

    try:
        result: Fulfilment = await store.write(
            partial(_fulfil_and_record, event=event, received_at=received_at)
        )
    except Exception as exc:
        if isinstance(exc, (TimeoutError, apsw.BusyError, *DISK_ERRORS)):  # not our bug
            log.error(
                "webhook %s %s: the database did not take it: %r",
                event.event_id,
                event.raw_type,
                exc,
            )
        else:
            log.exception("webhook %s %s: fulfilment failed", event.event_id, event.raw_type)
        await _record_quietly(
            request,
            Delivery(
                received_at=received_at,
                provider=provider,
                verified=True,
                outcome="error",
                detail=f"{type(exc).__name__}: {exc}"[:500],
                event_id=event.event_id,
                type=event.raw_type,
            ),
        )
        app[METRICS].webhook(event.raw_type, "error")
        return _error(500, "internal error; the delivery will be retried")

    app[METRICS].webhook(event.raw_type, result.outcome.value)
    app[METRICS].fulfilled("webhook", result, event.currency)
    log.log(
        logging.WARNING
        if event.kind in _DISPUTES  # even kept or repeated: a contested payment needs a human
        else _LOG_LEVEL.get(result.outcome, logging.INFO),
        "webhook %s %s: %s%s%s",
        event.event_id,
        event.raw_type,
        result.outcome,
        f" {result.amount:+d} {event.currency} sid={result.sid}" if result.amount else "",
        f" ({result.detail})" if result.detail else "",
    )
    return web.json_response({"received": True, "outcome": result.outcome.value})


def _fulfil_and_record(
    conn: apsw.Connection, *, event: ProviderEvent, received_at: int
) -> Fulfilment:
    """One transaction: the ledger change and the delivery record that explains it."""
    result = apply_event(conn, event, now=received_at)
    deliveries.record(
        conn,
        Delivery(
            received_at=received_at,
            provider=event.provider,
            verified=True,
            outcome=result.outcome.value,
            detail=result.detail,
            event_id=event.event_id,
            type=event.raw_type,
        ),
    )
    return result


async def _too_large(request: web.Request, received_at: int) -> web.Response:
    limit = request.app[SETTINGS].webhook_max_bytes
    return await _reject(request, 413, f"body larger than {limit} bytes", received_at=received_at)


async def _reject(
    request: web.Request, status: int, reason: str, *, received_at: int, verified: bool = False
) -> web.Response:
    request.app[METRICS].webhook(UNVERIFIED if not verified else "other", "rejected")
    log.warning("webhook rejected (%d): %s", status, reason)
    await _record_quietly(
        request,
        Delivery(
            received_at=received_at,
            provider=request.app[STRIPE].name,
            verified=verified,
            outcome="rejected",
            detail=f"{status}: {reason}",
        ),
    )
    return _error(status, reason)


async def _record_quietly(request: web.Request, delivery: Delivery) -> None:
    """Record a delivery we are refusing; failing to record must not change the answer."""
    app = request.app
    try:
        await app[STORE].write(partial(deliveries.record, delivery=delivery))
    except Exception as exc:
        log.error("could not record webhook delivery (%s): %s", delivery.outcome, exc)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
