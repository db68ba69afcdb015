"""What every sandbox API request goes through: ids, API keys, errors, idempotency, params.

Stripe answers every failure with `{"error": {...}}` and the right status; so does this layer,
for unknown routes and for our own bugs too (500 `api_error`, logged with the traceback, never
sent). POST requests honour `Idempotency-Key` as Stripe does: a replay of the first answer for
the same params, 400 `idempotency_error` for other params, 409 while the first is in flight.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import parse_qsl

from aiohttp import web

from .config import SandboxConfig
from .engine import RequestMeta
from .errors import StripeApiError, invalid
from .forms import parse_pairs
from .ids import new_id
from .keys import CONFIG, SANDBOX, SAVE
from .objects import API_VERSION
from .params import Schema, coerce

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUEST_ID: Final = web.RequestKey("sandbox_request_id", str)
# Set once a POST got past validation: from then on its answer is kept for its idempotency key.
EXECUTED: Final = web.RequestKey("sandbox_executed", bool)
API_PREFIXES: Final = ("/v1/", "/_sandbox/")
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY: Final = 255
_FORM: Final = "application/x-www-form-urlencoded"
_NO_KEY: Final = (
    "You did not provide an API key. You need to provide your API key in the Authorization "
    "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
)


def is_api(request: web.Request) -> bool:
    return request.path.startswith(API_PREFIXES)


def stripe_json(body: Any, *, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=_dumps)


def _dumps(body: Any) -> str:
    return json.dumps(body, indent=2)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stripe's error body for anything under the API prefixes; pages render their own."""
    if not is_api(request):
        return await handler(request)
    request_id = new_id("req_", 14)
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except StripeApiError as exc:
        response = stripe_json(exc.body(request_id), status=exc.status)
    except web.HTTPException as exc:
        if exc.status not in (404, 405):
            raise
        error = invalid(
            f"Unrecognized request URL ({request.method}: {request.path}). The sandbox serves "
            "the Checkout Session, PaymentIntent, Refund and Event endpoints.",
        )
        response = stripe_json(error.body(request_id), status=404)
    except Exception:
        log.exception(
            "sandbox bug while serving %s %s (%s)", request.method, request.path, request_id
        )
        error = StripeApiError(500, "An unknown error occurred", type="api_error")
        response = stripe_json(error.body(request_id), status=500)
    response.headers["Request-Id"] = request_id
    response.headers["Stripe-Version"] = API_VERSION
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if is_api(request):
        check_api_key(request.headers.get("Authorization", ""), request.app[CONFIG])
    return await handler(request)


def check_api_key(header: str, config: SandboxConfig) -> None:
    """Bearer (what the SDKs send) or Basic with the key as user name (what `curl -u` sends)."""
    key = ""
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer":
        key = credentials.strip()
    elif scheme.lower() == "basic":
        try:
            key = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            key = ""
    if not key:
        raise StripeApiError(401, _NO_KEY)
    if key.startswith(("pk_test_", "pk_live_")):
        raise StripeApiError(
            401,
            "This API call cannot be made with a publishable API key. Please use a secret API key.",
        )
    if config.api_key is not None:
        if not hmac.compare_digest(key.encode(), config.api_key.reveal().encode()):
            raise StripeApiError(401, "Invalid API Key provided.")
    elif not key.startswith(("sk_test_", "rk_test_")):
        raise StripeApiError(
            401, "Invalid API Key provided. The sandbox takes test-mode secret keys (sk_test_...)."
        )


@web.middleware
async def idempotency_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if request.method != "POST" or not request.path.startswith("/v1/") or key is None:
        return await handler(request)
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise invalid(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters long",
            param="Idempotency-Key",
        )
    state = request.app[SANDBOX].state
    now = request.app[SANDBOX].now()
    _forget_old_keys(state.idempotency, now - request.app[CONFIG].idempotency_ttl_s)
    fingerprint = await _fingerprint(request)
    record = state.idempotency.get(key)
    if record is not None:
        if record["fingerprint"] != fingerprint:
            raise StripeApiError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with. Try using a key other than '{key[:60]}' if you meant to "
                "execute a different request.",
                type="idempotency_error",
            )
        if record["status"] is None:
            raise StripeApiError(
                409,
                "There is currently another in-progress request using this Idempotent Key "
                "(probably a retry). Retry after the first request completes.",
                code="idempotency_key_in_use",
            )
        response = web.Response(
            text=record["body"], status=record["status"], content_type="application/json"
        )
        response.headers["Idempotent-Replayed"] = "true"
        return response
    record = {"fingerprint": fingerprint, "status": None, "body": None, "created": now}
    state.idempotency[key] = record
    try:
        response = await handler(request)
    except StripeApiError as exc:
        if not request.get(EXECUTED):
            del state.idempotency[key]  # failed validation: Stripe keeps nothing, a retry may run
            raise
        response = stripe_json(exc.body(request[REQUEST_ID]), status=exc.status)
    except BaseException:
        del state.idempotency[key]
        raise
    if not isinstance(response, web.Response) or not request.get(EXECUTED):
        del state.idempotency[key]
        return response
    assert isinstance(response.text, str)
    record.update(status=response.status, body=response.text)
    await request.app[SAVE]()
    return response


def _forget_old_keys(records: dict[str, Any], cutoff: int) -> None:
    """Stripe prunes keys after 24 h; records are in creation order: stop at the first young one."""
    for key in list(records):
        if records[key]["created"] >= cutoff:
            break
        del records[key]


async def _fingerprint(request: web.Request) -> str:
    body = await request.text()
    pairs = sorted(parse_qsl(body, keep_blank_values=True))
    canonical = json.dumps([request.method, request.path, pairs])
    return hashlib.sha256(canonical.encode()).hexdigest()


async def read_params(request: web.Request, schema: Schema) -> dict[str, Any]:
    """The request's params (query for GET, form body for POST), typed against `schema`."""
    if request.method == "POST":
        body = await request.text()
        if body and request.content_type != _FORM:
            raise invalid(
                f"Invalid request: unsupported Content-Type {request.content_type}. The API "
                f"takes {_FORM} bodies."
            )
        pairs = parse_qsl(body, keep_blank_values=True) + _query_pairs(request)
    else:
        pairs = _query_pairs(request)
    try:
        tree = parse_pairs(pairs)
    except UnicodeDecodeError:
        raise invalid("Invalid request: parameters must be UTF-8") from None
    return coerce(tree, schema) or {}


def _query_pairs(request: web.Request) -> list[tuple[str, str]]:
    # The raw string, decoded once here: aiohttp clients send `expand%5B0%5D=...`.
    return parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True)


def meta_of(request: web.Request) -> RequestMeta:
    return RequestMeta(request[REQUEST_ID], request.headers.get(IDEMPOTENCY_HEADER))


async def changed(request: web.Request) -> None:
    """Mark the request as executed and make its change durable before answering."""
    request[EXECUTED] = True
    await request.app[SAVE]()
