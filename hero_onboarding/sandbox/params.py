"""Reading form params against Stripe's own request schema, as Stripe's API does.

The bracket tree from forms.py holds only strings. Walking it beside the OpenAPI request schema
turns "12" into 12 where the schema says integer, `x[0]` dicts into lists where it says array,
and refuses what Stripe refuses: unknown parameters, bad integers and booleans, values outside
an enum, strings over maxLength, missing required fields. Messages follow Stripe's wording so
the SDK and the people reading them see what Stripe would say.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any, Final

from .errors import StripeApiError, invalid
from .forms import Tree

Schema = dict[str, Any]

_TRUE: Final = frozenset({"true"})
_FALSE: Final = frozenset({"false"})


@cache
def checkout_session_create_schema() -> Schema:
    """Stripe's form schema for POST /v1/checkout/sessions (packaged copy, see its _source)."""
    text = resources.files(__package__).joinpath("checkout_session_create.json").read_text()
    schema: Schema = json.loads(text)["schema"]
    # The copy is Stripe's 2026-07-29 spec; the SDK's API version (2026-10-28.endive) renamed
    # payment_method_types to allowed_payment_method_types, so both are read.
    schema["properties"]["allowed_payment_method_types"] = schema["properties"][
        "payment_method_types"
    ]
    return schema


def object_schema(**properties: Schema) -> Schema:
    """A closed object schema, for endpoints whose params our OpenAPI subset does not carry."""
    return {"type": "object", "properties": properties, "additionalProperties": False}


def coerce(value: Tree | str, schema: Schema, param: str = "") -> Any:
    """Typed value for `value` under `schema`, or a StripeApiError naming `param`."""
    if "anyOf" in schema:
        return _coerce_any_of(value, schema["anyOf"], param)
    kind = schema.get("type")
    if kind == "object":
        return _coerce_object(value, schema, param)
    if kind == "array":
        return _coerce_array(value, schema, param)
    if isinstance(value, dict):
        raise invalid(f"Invalid {_what(kind)}: expected a value, got a hash", param=param)
    if kind == "integer":
        return _coerce_integer(value, param)
    if kind == "boolean":
        return _coerce_boolean(value, param)
    if kind == "number":
        return _coerce_number(value, param)
    return _coerce_string(value, schema, param)


def _what(kind: str | None) -> str:
    return kind or "value"


def _coerce_any_of(value: Tree | str, options: list[Schema], param: str) -> Any:
    first_error: StripeApiError | None = None
    for option in options:
        try:
            return coerce(value, option, param)
        except StripeApiError as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def _coerce_object(value: Tree | str, schema: Schema, param: str) -> dict[str, Any] | None:
    if value == "":
        return None  # Stripe: an empty value unsets an optional hash
    if not isinstance(value, dict):
        raise invalid(f"Invalid object: {param or 'the request'} must be a hash", param=param)
    properties: dict[str, Schema] = schema.get("properties", {})
    extra = schema.get("additionalProperties", not properties)
    result: dict[str, Any] = {}
    for key, child in value.items():
        child_param = f"{param}[{key}]" if param else key
        if key in properties:
            coerced = coerce(child, properties[key], child_param)
        elif isinstance(extra, dict):
            coerced = coerce(child, extra, child_param)
        elif extra is True:
            coerced = child
        else:
            raise invalid(
                f"Received unknown parameter: {child_param}",
                param=child_param,
                code="parameter_unknown",
            )
        if coerced is not None:  # an emptied hash is as good as absent
            result[key] = coerced
    for key in schema.get("required", ()):
        child_param = f"{param}[{key}]" if param else key
        if value.get(key) == "":
            raise invalid(
                f"You passed an empty string for '{child_param}'. We assume empty values are an "
                f"attempt to unset a parameter; however '{child_param}' cannot be unset.",
                param=child_param,
                code="parameter_invalid_empty",
            )
        if key not in result:
            raise invalid(
                f"Missing required param: {child_param}.",
                param=child_param,
                code="parameter_missing",
            )
    return result


def _coerce_array(value: Tree | str, schema: Schema, param: str) -> list[Any]:
    if value == "":
        return []
    if not isinstance(value, dict):
        raise invalid(f"Invalid array: {param} must be a list", param=param)
    indices: list[int] = []
    for key in value:
        if not key.isdigit():
            raise invalid(f"Invalid array: {param}[{key}] is not a list index", param=param)
        indices.append(int(key))
    if sorted(indices) != list(range(len(indices))):
        raise invalid(f"Invalid array: the indices of {param} must run 0, 1, 2, ...", param=param)
    items: Schema = schema.get("items", {})
    result = []
    for index in sorted(indices):
        item = coerce(value[str(index)], items, f"{param}[{index}]")
        if item is None:
            raise invalid(f"Invalid object: {param}[{index}] is empty", param=f"{param}[{index}]")
        result.append(item)
    return result


def _coerce_integer(value: str, param: str) -> int:
    text = value.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        raise invalid(
            f"Invalid integer: {_shown(value)}", param=param, code="parameter_invalid_integer"
        )
    return int(text)


def _coerce_boolean(value: str, param: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise invalid(f"Invalid boolean: {_shown(value)}", param=param)


def _coerce_number(value: str, param: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise invalid(f"Invalid decimal: {_shown(value)}", param=param) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise invalid(f"Invalid decimal: {_shown(value)}", param=param)
    return number


def _coerce_string(value: str, schema: Schema, param: str) -> str:
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        name = param or "value"
        raise invalid(f"Invalid {name}: must be one of {_one_of(enum)}", param=param)
    limit = schema.get("maxLength")
    if limit is not None and len(value) > limit:
        raise invalid(
            f"Invalid string: {_shown(value)}; must be at most {limit} characters", param=param
        )
    return value


def _one_of(options: list[str]) -> str:
    if len(options) == 1:
        return options[0]
    return ", ".join(options[:-1]) + f", or {options[-1]}"


def _shown(value: str) -> str:
    """Echo a bad value the way Stripe does, but never a novel's worth of it."""
    return value if len(value) <= 40 else value[:40] + "..."
