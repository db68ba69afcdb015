"""One JSON-RPC 2.0 entry in, its answer out, as JSON data (None: a notification).

This does what jsonrpcserver 5 did for each entry, answer for answer (tests/test_rpc_dispatch.py
runs both on the same entries), without what that cost per call: a JSON round trip in and
out, jsonschema validating the request object against the JSON-RPC schema, `inspect.signature`
binding, and a task per call. Together that was about a third of the admin daemon's time for
`billing_get` (py-spy; README, Performance). What it answers:

- a request object that is not one (not an object, a key other than jsonrpc/method/id/params,
  jsonrpc not "2.0", method not a string, id not a string/number/null, params not an
  array/object): -32600 "Invalid request", data "The request failed schema validation", id null;
- an unknown method: -32601 "Method not found", data the method's name, with the id;
- a known one: what its `Method` returns, with the id; nothing for a notification (it runs);
- an entry that is itself a non-empty array of request objects (a batch inside a batch): the
  array of their answers, notifications left out (None if all are), as jsonrpcserver did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .errors import INVALID_REQUEST, METHOD_NOT_FOUND
from .numbers import all_finite


@dataclass(frozen=True)
class Reply:
    """What a method answered: a result, or an error object (code, message, maybe data)."""

    result: Any = None
    error: dict[str, Any] | None = None


# A registered method as the dispatcher calls it: (context, params) -> its reply.
Method = Callable[[Any, list[Any] | dict[str, Any]], Awaitable[Reply]]

_KEYS: Final = frozenset({"jsonrpc", "method", "id", "params"})
_NO_ID: Final = object()  # a notification's id


def is_request(entry: Any) -> bool:
    """Whether `entry` is a JSON-RPC 2.0 request object (jsonrpcserver's request schema)."""
    if not isinstance(entry, dict) or not _KEYS.issuperset(entry):
        return False
    version = entry.get("jsonrpc")
    if not isinstance(version, str) or version != "2.0":
        return False
    if not isinstance(entry.get("method"), str):
        return False
    if "id" in entry:
        given = entry["id"]
        if isinstance(given, bool) or not (given is None or isinstance(given, str | int | float)):
            return False
    return "params" not in entry or isinstance(entry["params"], list | dict)


async def dispatch(entry: Any, methods: Mapping[str, Method], context: Any) -> Any:
    """The answer to one entry of a request body (see the module docstring)."""
    if isinstance(entry, list):
        if not entry or not all(is_request(item) for item in entry):
            return _invalid()
        if not all_finite(entry):
            raise ValueError("a non-finite number is not JSON")  # as encoding it used to
        answers = await asyncio.gather(*(_call(item, methods, context) for item in entry))
        given = [answer for answer in answers if answer is not None]
        return given or None
    if not is_request(entry):
        return _invalid()
    return await _call(entry, methods, context)


async def _call(request: dict[str, Any], methods: Mapping[str, Method], context: Any) -> Any:
    name: str = request["method"]
    request_id = request.get("id", _NO_ID)
    method = methods.get(name)
    if method is None:
        reply = Reply(error={"code": METHOD_NOT_FOUND, "message": "Method not found", "data": name})
    else:
        reply = await method(context, request.get("params", []))
    if request_id is _NO_ID:
        return None
    if reply.error is not None:
        return {"jsonrpc": "2.0", "error": reply.error, "id": request_id}
    return {"jsonrpc": "2.0", "result": reply.result, "id": request_id}


def _invalid() -> dict[str, Any]:
    error = {
        "code": INVALID_REQUEST,
        "message": "Invalid request",
        "data": "The request failed schema validation",
    }
    return {"jsonrpc": "2.0", "error": error, "id": None}
