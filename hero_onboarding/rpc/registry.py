"""The method registry: what each JSON-RPC method takes, returns and can fail with.

Parameters are JSON Schemas; calls are validated against them before a handler runs (-32602
with a message naming the parameter), and the OpenRPC document is generated from the same
entries (`openrpc_document`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

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
    _validator: Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built once: compiling a validator per call cost more than the call itself.
        object.__setattr__(self, "_validator", _StrictValidator(self.params_schema()))

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
        error = min(self._validator.iter_errors(params), key=_depth_first, default=None)
        if error is None:
            return None
        where = "/".join(str(part) for part in error.absolute_path)
        return f"{where}: {error.message}" if where else error.message


# JSON Schema counts 1.0 as an integer; amounts and page sizes must be whole numbers as sent.
# types-jsonschema leaves `extend` unannotated (create() is typed, and is what it returns).
_StrictValidator: Final[type[Validator]] = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft7Validator,
    type_checker=jsonschema.Draft7Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)


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
