"""POST /webhooks/{provider}: verify, fulfil, record, answer — in that order, durably.

The answer is Stripe's cue: 2xx means "done, never send this again", anything else means
"retry later". So we answer 2xx only after the credit (or the decision not to credit) and the
delivery record are committed together, 401 for anything not provably from Stripe, and 500 when
we failed, so Stripe retries until we can take it.

What cannot be shown to come from Stripe (a bad signature, a body over --webhook-max-bytes, a
body that cannot be read) costs the sender one counter increment: each is counted in
hero_onboarding_webhook_unverified_total{reason}, but only the first of each second per
provider is stored in webhook_deliveries and logged, carrying how many were held back since.
Anyone on the internet can send those; a flood of them must not become a flood of writes.
Verified deliveries, accepted or refused, are all stored.
"""

from __future__ import annotations

import json
import logging
import time
from functools import partial
from typing import Final

import apsw
from aiohttp import web

from ..billing import Fulfilment, Outcome, apply_event
from ..errors import InputError
from ..payments.base import (
    EventKind,
    InvalidPayload,
    InvalidSignature,
    ProviderEvent,
    WebhookParser,
)
from ..store import deliveries
from ..store.db import DISK_ERRORS
from ..store.deliveries import Delivery
from .connections import BodyTimeout
from .guards import closing
from .keys import CLOCK, METRICS, SETTINGS, STORE, WEBHOOK_PARSERS
from .metrics import UNVERIFIED
from .sampling import Admitted, RateGate

log = logging.getLogger(__name__)

# Unverified deliveries stored and logged: at most one per this many seconds per provider.
UNVERIFIED_SAMPLE_S: Final = 1.0
UNVERIFIED_GATE = web.AppKey("unverified_webhook_gate", RateGate)


class BodyTooLarge(InputError, http_status=413):
    """The body went past the limit; reading stopped there."""


def setup_webhook_sampling(app: web.Application) -> None:
    """Give `app` its own gate for unverified deliveries (per app: no module state)."""
    app[UNVERIFIED_GATE] = RateGate(UNVERIFIED_SAMPLE_S)


_DISPUTES = (EventKind.DISPUTED, EventKind.DISPUTE_WON)

# Every verified delivery gets a 2xx and a row in webhook_deliveries; the log line's level says
# how much an operator should care: unmatched money and disputes need a human, replays and
# foreign events are routine.
_LOG_LEVEL = {
    Outcome.UNMATCHED: logging.WARNING,
    Outcome.DUPLICATE: logging.DEBUG,
    Outcome.IGNORED: logging.DEBUG,
}


# The answer to each verified delivery, encoded once (it only names the outcome).
_ANSWERS: Final = {
    outcome: json.dumps({"received": True, "outcome": outcome.value}).encode()
    for outcome in Outcome
}


def _parser(request: web.Request) -> WebhookParser:
    """The parser of the provider the path names (the route matches only names it serves)."""
    return request.app[WEBHOOK_PARSERS][request.match_info["provider"]]


async def webhook(request: web.Request) -> web.Response:
    started = time.perf_counter()
    try:
        return await _handle(request)
    finally:
        request.app[METRICS].webhook_seconds.observe(time.perf_counter() - started)


async def _handle(request: web.Request) -> web.Response:
    app = request.app
    settings, store, parser = app[SETTINGS], app[STORE], _parser(request)
    received_at = int(app[CLOCK]())
    provider = parser.name

    limit = settings.webhook_max_bytes
    try:
        if (request.content_length or 0) > limit:
            raise BodyTooLarge
        body = await read_bounded(request, limit)
    except BodyTooLarge:
        reason = f"body larger than {limit} bytes"
        return await closing(
            request, await _unverified(request, 413, reason, "too_large", received_at)
        )
    except BodyTimeout as exc:  # the sender stalled mid-body (--body-timeout-s)
        return await closing(
            request, await _unverified(request, 408, str(exc), "unreadable", received_at)
        )
    except web.RequestPayloadError as exc:  # broken chunked framing, a short body
        reason = f"body could not be read: {exc}"
        return await closing(
            request, await _unverified(request, 400, reason, "unreadable", received_at)
        )

    try:
        event = parser.parse_webhook(body, request.headers)
    except InvalidSignature as exc:
        app[METRICS].signature_failures.inc()
        return await _unverified(request, 401, str(exc), "signature", received_at)
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
    return web.Response(
        body=_ANSWERS[result.outcome], content_type="application/json", charset="utf-8"
    )


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


async def read_bounded(request: web.Request, limit: int) -> bytes:
    """The body, chunked or not, reading no further than one chunk past `limit` bytes.

    A Stripe event usually arrives whole with its head, as one chunk already at the end of
    the body: that chunk is the body, with no copy and no second read to find the end.
    """
    content = request.content
    first = await content.readany()
    if len(first) > limit:
        raise BodyTooLarge
    if not first or content.at_eof():
        return first
    body = bytearray(first)
    while chunk := await content.readany():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


async def _unverified(
    request: web.Request, status: int, reason: str, why: str, received_at: int
) -> web.Response:
    """Refuse a delivery not shown to be Stripe's: count it always, store and log a sample."""
    app = request.app
    provider = _parser(request).name
    app[METRICS].webhook(UNVERIFIED, "rejected")
    app[METRICS].webhook_unverified.labels(why).inc()
    admitted = app[UNVERIFIED_GATE].admit(provider)
    if admitted is not None:
        held = _held_back(admitted)
        log.warning(
            "unverified webhook deliveries (%s): refused one (%d: %s)%s",
            provider,
            status,
            reason,
            held,
        )
        await _record_quietly(
            request,
            Delivery(
                received_at=received_at,
                provider=provider,
                verified=False,
                outcome="rejected",
                detail=f"{status}: {reason}{held}"[:500],
            ),
        )
    return _error(status, reason)


def _held_back(admitted: Admitted) -> str:
    if not admitted.held_back:
        return ""
    return (
        f"; {admitted.held_back} more refused in the {admitted.since_s:.0f} s before,"
        " not stored (see hero_onboarding_webhook_unverified_total)"
    )


async def _reject(
    request: web.Request, status: int, reason: str, *, received_at: int, verified: bool
) -> web.Response:
    """Refuse a verified delivery (its payload): every one is logged and stored."""
    request.app[METRICS].webhook("other", "rejected")
    log.warning("webhook rejected (%d): %s", status, reason)
    await _record_quietly(
        request,
        Delivery(
            received_at=received_at,
            provider=_parser(request).name,
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
