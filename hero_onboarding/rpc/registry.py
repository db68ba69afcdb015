"""The method registry: what each JSON-RPC method takes, returns and can fail with.

Parameters are JSON Schemas; calls are validated against them before a handler runs (-32602
with a message naming the parameter), and the OpenRPC document is generated from the same
entries (`openrpc_document`).

Two checks, one answer: a quick one compiled from the schemas (the keywords our parameters use:
type, length, bounds, enum, pattern) says "valid" for the calls that are, in a few
microseconds; anything it does not accept goes to jsonschema, which decides and words the
error. So jsonschema is the judge of every refusal (its messages are the ones clients see), and
it is imported only when a call is refused: a daemon answering good calls never loads it, and
jsonschema per call was a fifth of the admin daemon's time (py-spy, see README Performance).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import jsonschema
    from jsonschema.protocols import Validator

Json = Any
Handler = Callable[..., Awaitable[Json]]

OPENRPC_VERSION: Final = "1.2.6"


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Json]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class ErrorSpec:
    code: int
    message: str


@dataclass(frozen=True)
class RpcMethod:
    name: str
    handler: Handler
    summary: str
    params: tuple[Param, ...] = ()
    result_schema: dict[str, Json] = field(default_factory=dict)
    errors: tuple[ErrorSpec, ...] = ()
    wants_caller: bool = False  # the handler takes `caller=`: who is calling, for audits
    _quick: Callable[[Json], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_quick", quick_check(self.params))

    @cached_property
    def _validator(self) -> Validator:
        # Built once, on the first call the quick check does not pass: compiling a validator
        # per call cost more than the call itself.
        return _strict_validator()(self.params_schema())

    def params_schema(self) -> dict[str, Json]:
        return {
            "type": "object",
            "properties": {p.name: p.schema for p in self.params},
            "required": [p.name for p in self.params if p.required],
            "additionalProperties": False,
        }

    def check_params(self, params: Json) -> str | None:
        """What is wrong with `params`, in words, or None."""
        if isinstance(params, list):
            if params:
                return "params must be an object (this service takes them by name)"
            params = {}
        if not _encodable(params):
            return "strings must be valid Unicode (no lone surrogates)"
        if self._quick(params):
            return None
        error = min(self._validator.iter_errors(params), key=_depth_first, default=None)
        if error is None:
            return None
        where = "/".join(str(part) for part in error.absolute_path)
        return f"{where}: {error.message}" if where else error.message


@cache
def _strict_validator() -> type[Validator]:
    """Draft 7, except that 1.0 is not an integer: amounts and page sizes must be whole
    numbers as sent (JSON Schema counts 1.0 as one)."""
    import jsonschema  # here: only a refused call needs it (module docstring)

    validator: type[Validator] = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        jsonschema.Draft7Validator,
        type_checker=jsonschema.Draft7Validator.TYPE_CHECKER.redefine(
            "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
        ),
    )
    return validator


# -- the quick check ---------------------------------------------------------------------------
# It may only say True where jsonschema (with _strict_validator) says valid; where in doubt it
# says False and jsonschema decides. tests/test_rpc_params.py checks that against jsonschema.

ValueCheck = Callable[[Json], bool]
_QUICK_KEYWORDS: Final = frozenset(
    {"type", "minLength", "maxLength", "minimum", "maximum", "enum", "pattern", "default"}
)
_QUICK_TYPES: Final[Mapping[str, ValueCheck]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _never(_: Json) -> bool:
    return False


def quick_check(params: tuple[Param, ...]) -> Callable[[Json], bool]:
    """A function saying True only for parameter objects the schemas surely accept."""
    checks: dict[str, ValueCheck] = {}
    for param in params:
        check = _quick_value(param.schema)
        if check is None:
            return _never  # a keyword it does not know: jsonschema decides every call
        checks[param.name] = check
    required = tuple(p.name for p in params if p.required)

    def valid(given: Json) -> bool:
        if not isinstance(given, dict):
            return False
        for name in required:
            if name not in given:
                return False
        for name, value in given.items():
            check = checks.get(name)
            if check is None or not check(value):
                return False
        return True

    return valid


def _quick_value(schema: Mapping[str, Json]) -> ValueCheck | None:
    if not _QUICK_KEYWORDS.issuperset(schema):
        return None
    tests = [build(schema) for build in _BUILDERS]
    active = [test for test in tests if test is not _always]
    if any(test is None for test in active):
        return None

    def check(value: Json) -> bool:
        # Only plain values: a float, list or object goes to jsonschema whatever the schema.
        if not (value is None or isinstance(value, (str, int))):
            return False
        return all(test(value) for test in active if test is not None)

    return check


def _always(_: Json) -> bool:
    return True


def _type_test(schema: Mapping[str, Json]) -> ValueCheck | None:
    declared = schema.get("type")
    if declared is None:
        return _always
    names = [declared] if isinstance(declared, str) else declared
    if not all(name in _QUICK_TYPES for name in names):
        return None
    kinds = [_QUICK_TYPES[name] for name in names]
    return lambda v: any(kind(v) for kind in kinds)


def _enum_test(schema: Mapping[str, Json]) -> ValueCheck | None:
    if "enum" not in schema:
        return _always
    allowed = tuple(schema["enum"])
    if not all(isinstance(option, str) for option in allowed):
        return None
    return lambda v: isinstance(v, str) and v in allowed


def _bounds_test(schema: Mapping[str, Json]) -> ValueCheck:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is None and high is None:
        return _always
    return lambda v: _within(v, low, high)


def _length_test(schema: Mapping[str, Json]) -> ValueCheck:
    shortest, longest = schema.get("minLength"), schema.get("maxLength")
    if shortest is None and longest is None:
        return _always
    return lambda v: not isinstance(v, str) or _within(len(v), shortest, longest)


def _pattern_test(schema: Mapping[str, Json]) -> ValueCheck:
    if "pattern" not in schema:
        return _always
    search = re.compile(schema["pattern"]).search
    return lambda v: not isinstance(v, str) or search(v) is not None


_BUILDERS: Final[tuple[Callable[[Mapping[str, Json]], ValueCheck | None], ...]] = (
    _type_test,
    _enum_test,
    _bounds_test,
    _length_test,
    _pattern_test,
)


def _within(value: Json, low: Json, high: Json) -> bool:
    if isinstance(value, bool) or not isinstance(value, int):
        return not isinstance(value, (int, float))  # bounds apply to numbers only
    return (low is None or value >= low) and (high is None or value <= high)


def _encodable(value: Json) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_encodable(v) for v in value)
    return True


def _depth_first(error: jsonschema.ValidationError) -> tuple[int, str]:
    return (-len(error.absolute_path), error.message)


class Registry:
    def __init__(self) -> None:
        self._methods: dict[str, RpcMethod] = {}

    def add(self, method: RpcMethod) -> None:
        if method.name in self._methods:
            raise ValueError(f"method {method.name} registered twice")
        self._methods[method.name] = method

    def method(
        self,
        name: str,
        summary: str,
        *,
        params: tuple[Param, ...] = (),
        result: dict[str, Json] | None = None,
        errors: tuple[ErrorSpec, ...] = (),
        wants_caller: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Decorator: register `handler(**params)` under `name`."""

        def register(handler: Handler) -> Handler:
            self.add(RpcMethod(name, handler, summary, params, result or {}, errors, wants_caller))
            return handler

        return register

    def __iter__(self) -> Iterator[RpcMethod]:
        return iter(self._methods.values())

    def get(self, name: str) -> RpcMethod | None:
        return self._methods.get(name)

    def openrpc_document(self, *, title: str, version: str, description: str) -> dict[str, Json]:
        return {
            "openrpc": OPENRPC_VERSION,
            "info": {"title": title, "version": version, "description": description},
            "methods": [_describe(m) for m in sorted(self, key=lambda m: m.name)],
        }


def _describe(method: RpcMethod) -> dict[str, Json]:
    described: dict[str, Json] = {
        "name": method.name,
        "summary": method.summary,
        "paramStructure": "by-name",
        "params": [
            {
                "name": p.name,
                "description": p.description,
                "required": p.required,
                "schema": p.schema,
            }
            for p in method.params
        ],
        "result": {"name": f"{method.name}_result", "schema": method.result_schema},
    }
    if method.errors:
        described["errors"] = [{"code": e.code, "message": e.message} for e in method.errors]
    return described
