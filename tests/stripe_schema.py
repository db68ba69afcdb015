"""Validating what the sandbox returns against Stripe's own OpenAPI schemas (a stored subset).

The subset is OpenAPI 3.0: `nullable: true` is not JSON Schema, so it is rewritten into null
unions first (the subset's own _source.caveats say so). Beyond the schema, Stripe's objects carry
every documented key and nothing invented: the key sets are checked against the properties too.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SUBSET = Path(__file__).parent / "fixtures" / "stripe-openapi-subset.json"
# Keys in SDK 16.x's API version (2026-10-28.endive) that the dahlia subset predates.
NEWER_KEYS = {"payment_intent": {"source"}}
# Objects whose schema is stubbed in the subset (accepts anything): only their shape is checked.
STUBBED = {"item"}
CHECKED = (
    "charge", "checkout.session", "dispute", "event", "payment_intent", "refund",
    "webhook_endpoint", "deleted_webhook_endpoint",
)  # fmt: skip
# Expandable fields the sandbox expands, by object: an expanded object is checked in turn.
EXPANDED = {
    "checkout.session": ("payment_intent", "line_items"),
    "payment_intent": ("latest_charge",),
}


def _nullable_to_union(node: Any) -> Any:
    if isinstance(node, dict):
        node = {key: _nullable_to_union(value) for key, value in node.items()}
        if node.pop("nullable", False):
            if "type" in node:
                node["type"] = [node["type"], "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
            if "anyOf" in node:
                node["anyOf"] = [*node["anyOf"], {"type": "null"}]
        return node
    if isinstance(node, list):
        return [_nullable_to_union(item) for item in node]
    return node


@cache
def _components() -> dict[str, Any]:
    document = json.loads(SUBSET.read_text())
    return _nullable_to_union(document["components"])


@cache
def _validator(schema_name: str) -> jsonschema.Draft7Validator:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": _components()}
    return jsonschema.Draft7Validator(schema)


def schema_properties(schema_name: str) -> set[str]:
    return set(_components()["schemas"][schema_name].get("properties", {}))


def check_object(obj: Any, where: str = "response") -> None:
    """Assert `obj` (a Stripe object, list, or error body) is what Stripe's schema allows."""
    assert isinstance(obj, dict), f"{where}: not a JSON object"
    if "error" in obj and "object" not in obj:
        _check_schema(obj, "error", where)
        return
    kind = obj.get("object")
    if kind == "list":
        assert set(obj) == {"object", "data", "has_more", "url"}, f"{where}: list keys {set(obj)}"
        for index, item in enumerate(obj["data"]):
            if isinstance(item, dict) and "object" in item:
                check_object(item, f"{where}.data[{index}]")
        return
    if kind in STUBBED:
        assert isinstance(obj.get("id"), str), f"{where}: {kind} without an id"
        return
    if obj.get("deleted") is True:  # Stripe's deleted_<kind> answer to a DELETE
        kind = f"deleted_{kind}"
    assert kind in CHECKED, f"{where}: object {kind!r}"
    _check_schema(obj, kind, where)
    invented = set(obj) - schema_properties(kind) - NEWER_KEYS.get(kind, set())
    assert not invented, f"{where}: keys Stripe does not document on {kind}: {sorted(invented)}"
    for name, value in obj.items():
        nested = _components()["schemas"][kind].get("properties", {}).get(name)
        if nested is not None:
            _check_nested_keys(value, nested, f"{where}.{name}")
    if kind == "event":
        check_object(obj["data"]["object"], f"{where}.data.object")
    for name in EXPANDED.get(kind, ()):
        if isinstance(obj.get(name), dict):
            check_object(obj[name], f"{where}.{name}")


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = _components()["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _check_nested_keys(value: Any, schema: dict[str, Any], where: str) -> None:
    """No invented keys in sub-objects either (a hash the schema spells out, e.g. a charge's
    outcome or a dispute's evidence); API resources nested in a value are checked on their own
    by check_object, stubbed schemas ({}) not at all."""
    schema = _resolve(schema)
    if isinstance(value, list):
        items = schema.get("items")
        for index, item in enumerate(value):
            if items is not None:
                _check_nested_keys(item, items, f"{where}[{index}]")
        return
    if not isinstance(value, dict):
        return
    options = [_resolve(option) for option in schema.get("anyOf", [])] or [schema]
    shaped = [o for o in options if o.get("type", "object") == "object" and "properties" in o]
    if not shaped or (isinstance(value.get("object"), str) and value["object"] != "list"):
        return  # free-form (metadata), stubbed, or an API resource of its own
    known = set().union(*(set(o["properties"]) for o in shaped))
    if any(o.get("additionalProperties") for o in shaped):
        return
    invented = set(value) - known
    assert not invented, f"{where}: keys Stripe does not document here: {sorted(invented)}"
    for option in shaped:
        for name, child in value.items():
            if name in option["properties"]:
                _check_nested_keys(child, option["properties"][name], f"{where}.{name}")


def _check_schema(obj: dict[str, Any], schema_name: str, where: str) -> None:
    errors = sorted(_validator(schema_name).iter_errors(copy.deepcopy(obj)), key=str)
    assert not errors, f"{where}: not a valid {schema_name}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]
    )
