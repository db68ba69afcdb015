"""What every sandbox API request goes through: ids, API keys, errors, idempotency, params.

Stripe answers every failure with `{"error": {...}}` and the right status; so does this layer,
for unknown routes and for our own bugs too (500 `api_error`, logged with the traceback, never
sent). POST requests honour `Idempotency-Key` as Stripe does: a replay of the first answer for
the same params, 400 `idempotency_error` for other params, 409 while the first is in flight.
"""

from __future__ import annotations

import base64
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
from .versions import check_version

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUEST_ID: Final = web.RequestKey("sandbox_request_id", str)
# Set once a POST got past validation: from then on its answer is kept for its idempotency key.
EXECUTED: Final = web.RequestKey("sandbox_executed", bool)
BODY: Final = web.RequestKey("sandbox_body", str)
# The API version the request asked for (Stripe-Version), once the sandbox agreed to render it.
VERSION: Final = web.RequestKey("sandbox_version", str)
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
    return json.dumps(body, indent=2, ensure_ascii=False)  # UTF-8 on the wire, as Stripe


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
        if exc.status < 400:
            raise
        response = stripe_json(_http_error(request, exc).body(request_id), status=exc.status)
    except Exception:
        log.exception(
            "sandbox bug while serving %s %s (%s)", request.method, request.path, request_id
        )
        response = stripe_json(internal_error().body(request_id), status=500)
    response.headers["Request-Id"] = request_id
    response.headers["Stripe-Version"] = request.get(VERSION, API_VERSION)
    return response


def internal_error() -> StripeApiError:
    return StripeApiError(500, "An unknown error occurred", type="api_error")


def _http_error(request: web.Request, exc: web.HTTPException) -> StripeApiError:
    if exc.status in (404, 405):
        return StripeApiError(
            exc.status,
            f"Unrecognized request URL ({request.method}: {request.path}). The sandbox serves "
            "the Checkout Session, PaymentIntent, Charge, Refund, Dispute and Event endpoints.",
        )
    return StripeApiError(exc.status, f"{exc.reason}: {exc.text}" if exc.text else exc.reason)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The API key first, then the API version: never answer in a version not asked for."""
    if is_api(request):
        check_api_key(request.headers.get("Authorization", ""), request.app[CONFIG])
        asked = request.headers.get("Stripe-Version")
        if asked is not None:
            request[VERSION] = check_version(asked.strip())
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
        except ValueError:  # binascii.Error and UnicodeDecodeError both are
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
async def commit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Make each API change durable before it is answered, and keep Idempotency-Key answers.

    A handler marks its request executed once validation passed and state changed; only then is
    the state saved (which also frees the change's webhooks, see app.py) and, with a key, the
    answer recorded. From that point the key is never forgotten, whatever goes wrong: a retry
    must replay the answer, never run the change twice.
    """
    if request.method != "POST" or not is_api(request):
        return await handler(request)
    key = request.headers.get(IDEMPOTENCY_HEADER) if request.path.startswith("/v1/") else None
    records = request.app[SANDBOX].state.idempotency
    record: dict[str, Any] | None = None
    if key is not None:
        replay, record = await _claim_key(request, key)
        if replay is not None:
            return replay
    try:
        response = await handler(request)
    except StripeApiError as exc:
        if not request.get(EXECUTED):
            _forget(records, key)  # validation failed: Stripe keeps nothing, a retry may run
            raise
        response = stripe_json(exc.body(request[REQUEST_ID]), status=exc.status)
    except Exception:
        if not request.get(EXECUTED):
            _forget(records, key)
            raise
        log.exception("sandbox bug after a change, serving %s %s", request.method, request.path)
        response = stripe_json(internal_error().body(request[REQUEST_ID]), status=500)
    except BaseException:  # cancelled at shutdown: a change that happened stays answered
        if request.get(EXECUTED):
            _keep_answer(
                record, stripe_json(internal_error().body(request[REQUEST_ID]), status=500)
            )
        else:
            _forget(records, key)
        raise
    if not request.get(EXECUTED) or not isinstance(response, web.Response):
        _forget(records, key)
        return response
    _keep_answer(record, response)  # before the save, so the file never has the change alone
    try:
        await request.app[SAVE]()
    except Exception:  # the change stands in memory; the next save that works writes it
        log.exception("could not save the sandbox state after %s %s", request.method, request.path)
        response = stripe_json(internal_error().body(request[REQUEST_ID]), status=500)
        _keep_answer(record, response)
    return response


def _keep_answer(record: dict[str, Any] | None, response: web.Response) -> None:
    if record is not None:
        assert isinstance(response.text, str)  # stripe_json bodies are text
        record.update(status=response.status, body=response.text)


async def _claim_key(
    request: web.Request, key: str
) -> tuple[web.Response | None, dict[str, Any] | None]:
    """A replay of the key's first answer, or a fresh in-flight record for this request."""
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise invalid(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters long",
            param="Idempotency-Key",
        )
    sandbox = request.app[SANDBOX]
    records = sandbox.state.idempotency
    now = sandbox.now()
    _forget_old_keys(records, now - request.app[CONFIG].idempotency_ttl_s)
    fingerprint = await _fingerprint(request)
    record = records.get(key)
    if record is None:
        record = {"fingerprint": fingerprint, "status": None, "body": None, "created": now}
        records[key] = record
        return None, record
    if record["fingerprint"] != fingerprint:
        raise StripeApiError(
            400,
            "Keys for idempotent requests can only be used with the same parameters they were "
            f"first used with. Try using a key other than '{key[:60]}' if you meant to execute "
            "a different request.",
            type="idempotency_error",
        )
    if record["status"] is None:
        raise StripeApiError(
            409,
            "There is currently another in-progress request using this Idempotent Key "
            "(probably a retry). Retry after the first request completes.",
            code="idempotency_key_in_use",
        )
    replay = web.Response(
        text=record["body"], status=record["status"], content_type="application/json"
    )
    replay.headers["Idempotent-Replayed"] = "true"
    return replay, None


def _forget(records: dict[str, Any], key: str | None) -> None:
    if key is not None:
        records.pop(key, None)


def _forget_old_keys(records: dict[str, Any], cutoff: int) -> None:
    """Stripe prunes keys after 24 h; records are in creation order: stop at the first young one."""
    for key in list(records):
        if records[key]["created"] >= cutoff:
            break
        del records[key]


async def _fingerprint(request: web.Request) -> str:
    """The request's parsed params, as Stripe compares them: `a=1&b=2` and `b=2&a=1` are the
    same params, `x[0]=a&x[1]=b` and `x[0]=b&x[1]=a` are not (a list keeps its order)."""
    body = parse_pairs(parse_qsl(await body_text(request), keep_blank_values=True))
    query = parse_pairs(_query_pairs(request))
    canonical = json.dumps([request.method, request.path, query, body], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def body_text(request: web.Request) -> str:
    """The form body as UTF-8 text (whatever charset the header claims), or a 400."""
    if BODY in request:
        return request[BODY]
    raw = await request.read()
    if raw and request.content_type != _FORM:
        raise invalid(
            f"Invalid request: unsupported Content-Type {request.content_type[:100]}. The API "
            f"takes {_FORM} bodies."
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid("Invalid request: the body is not UTF-8") from None
    request[BODY] = text
    return text


async def read_params(request: web.Request, schema: Schema) -> dict[str, Any]:
    """The request's params (query for GET, form body for POST), typed against `schema`."""
    pairs = _query_pairs(request)
    if request.method == "POST":
        pairs = parse_qsl(await body_text(request), keep_blank_values=True) + pairs
    return coerce(parse_pairs(pairs), schema) or {}


def _query_pairs(request: web.Request) -> list[tuple[str, str]]:
    # The raw string, decoded once here: aiohttp clients send `expand%5B0%5D=...`.
    return parse_qsl(request.rel_url.raw_query_string, keep_blank_values=True)


def meta_of(request: web.Request) -> RequestMeta:
    return RequestMeta(request[REQUEST_ID], request.headers.get(IDEMPOTENCY_HEADER))


def executed(request: web.Request) -> None:
    """The request passed validation and changed state: commit_middleware saves it."""
    request[EXECUTED] = True
