"""Stripe's list conventions: cursor pagination and the `created` range filter."""

from __future__ import annotations

from typing import Final

from . import objects
from .errors import invalid, missing_resource
from .state import Obj

MAX_LIST_LIMIT: Final = 100


def paginate(items: list[Obj], query: Obj, *, url: str, newest: bool = True) -> Obj:
    """Stripe's cursor pagination: `limit` (1..100), `starting_after`, `ending_before`."""
    ordered = list(reversed(items)) if newest else list(items)
    limit = query.get("limit", 10)
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise invalid(f"Invalid limit: must be between 1 and {MAX_LIST_LIMIT}", param="limit")
    ids = [item["id"] for item in ordered]
    if "starting_after" in query and "ending_before" in query:
        raise invalid(
            "starting_after and ending_before cannot be used together",
            param="ending_before",
            code="parameters_exclusive",
        )
    if "starting_after" in query:
        cursor = query["starting_after"]
        if cursor not in ids:
            raise missing_resource("object", cursor, param="starting_after")
        ordered = ordered[ids.index(cursor) + 1 :]
        page, has_more = ordered[:limit], len(ordered) > limit
    elif "ending_before" in query:
        cursor = query["ending_before"]
        if cursor not in ids:
            raise missing_resource("object", cursor, param="ending_before")
        ordered = ordered[: ids.index(cursor)]
        page, has_more = ordered[-limit:], len(ordered) > limit
    else:
        page, has_more = ordered[:limit], len(ordered) > limit
    return objects.list_object(page, url=url, has_more=has_more)


def in_range(value: int, bounds: int | Obj | None) -> bool:
    """Stripe's `created` filter: an exact integer or a hash of gt/gte/lt/lte."""
    if bounds is None:
        return True
    if isinstance(bounds, int):
        return value == bounds
    # The list schemas type each bound as an integer.
    gt: int = bounds.get("gt", value - 1)
    gte: int = bounds.get("gte", value)
    lt: int = bounds.get("lt", value + 1)
    lte: int = bounds.get("lte", value)
    return gt < value < lt and gte <= value <= lte


def type_matches(pattern: str, event_type: str) -> bool:
    if pattern.endswith("*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type
