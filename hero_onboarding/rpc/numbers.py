"""Numbers JSON carries that Python cannot send back: refused before a call runs.

`json.loads` reads `1e999` as `inf`, and no JSON can carry `inf` back. An id like that was
echoed into the answer, whose encoding then failed after the call had run (an HTTP 500, and a
whole batch lost). So, per entry and before dispatch:

- the id must be a string, an integer, null, or a float with no fractional part (`1.0`,
  `1e3`: JSON has one number type, and JSON-RPC 2.0 only says ids SHOULD NOT have fractional
  parts; we refuse those, and non-finite ones, bools, objects and arrays): else -32600
  Invalid Request with id null;
- no number anywhere in params may be non-finite: else -32602 Invalid params with the id
  (a notification gets no answer either way, and nothing runs);
- elsewhere in the entry, a non-finite number is -32600.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import INVALID_PARAMS, INVALID_REQUEST


@dataclass(frozen=True)
class Refused:
    """The entry must not run; `answer` is what to send for it (None: a notification)."""

    answer: dict[str, Any] | None


def id_is_valid(value: object) -> bool:
    if value is None or isinstance(value, str):
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def all_finite(value: object) -> bool:
    """No inf or nan anywhere in `value` (iterative: params may nest as deep as JSON allows)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                return False
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return True


def refuse_numbers(entry: object) -> Refused | None:
    """Why `entry` must not run, as its answer; None when its numbers are fine."""
    if not isinstance(entry, dict):
        return None  # not a request at all: jsonrpcserver answers -32600
    if "id" in entry and not id_is_valid(entry["id"]):
        return Refused(
            _error(None, INVALID_REQUEST, "Invalid Request", "the id must be a string, "
                   "an integer or null")
        )  # fmt: skip
    answer_id = entry.get("id")
    if not all_finite(entry.get("params")):
        if "id" not in entry:
            return Refused(None)
        return Refused(_error(answer_id, INVALID_PARAMS, "invalid params: numbers must be finite"))
    if not all_finite({k: v for k, v in entry.items() if k != "params"}):
        return Refused(_error(None, INVALID_REQUEST, "Invalid Request", "numbers must be finite"))
    return None


def _error(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "error": error, "id": request_id}
