"""rpc/dispatch.py answers as jsonrpcserver did, and the registry's quick parameter check
never accepts what jsonschema refuses: both are checked against the library they replace."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from jsonrpcserver import Error, Success, async_dispatch

from hero_onboarding.admin.methods import AdminContext, build_registry
from hero_onboarding.rpc.dispatch import Reply, dispatch
from hero_onboarding.rpc.registry import _strict_validator

scalars: st.SearchStrategy[bool | int | str | float | None]
scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8)
scalars |= st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
methods = st.sampled_from(["echo", "fail", "nope"]) | st.text(max_size=4) | json_values
entries = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2.0]) | json_values,
        "method": methods,
        "id": scalars | st.lists(scalars, max_size=1),
        "params": json_values,
        "extra": json_values,
    },
)
entry_or_nested = entries | st.lists(entries, max_size=3) | json_values


async def _ours(context: Any, params: Any) -> Reply:
    if context == "fail":
        return Reply(error={"code": -32011, "message": "no", "data": params})
    return Reply(result={"params": params})


async def _theirs_echo(context: Any, *args: Any, **kwargs: Any) -> Any:
    return Success({"params": list(args) if args or not kwargs else kwargs})


async def _theirs_fail(context: Any, *args: Any, **kwargs: Any) -> Any:
    return Error(-32011, "no", list(args) if args or not kwargs else kwargs)


async def _through_jsonrpcserver(entry: Any) -> Any:
    text = await async_dispatch(
        json.dumps(entry), methods={"echo": _theirs_echo, "fail": _theirs_fail}, context="x"
    )
    return json.loads(text) if text else None


async def _through_ours(entry: Any) -> Any:
    async def fail(context: Any, params: Any) -> Reply:
        return await _ours("fail", params)

    answer = await dispatch(entry, {"echo": _ours, "fail": fail}, "x")
    return None if answer is None else json.loads(json.dumps(answer))


@settings(max_examples=400, deadline=None)
@given(entry=entry_or_nested)
async def test_every_entry_is_answered_as_jsonrpcserver_answered_it(entry: Any) -> None:
    theirs = await _through_jsonrpcserver(entry)
    ours = await _through_ours(entry)
    assert ours == theirs


async def test_the_documented_answers() -> None:
    assert await _through_ours({"jsonrpc": "2.0", "method": 5, "id": 1}) == {
        "jsonrpc": "2.0",
        "error": {
            "code": -32600,
            "message": "Invalid request",
            "data": "The request failed schema validation",
        },
        "id": None,
    }
    assert await _through_ours({"jsonrpc": "2.0", "method": "nope", "id": 3}) == {
        "jsonrpc": "2.0",
        "error": {"code": -32601, "message": "Method not found", "data": "nope"},
        "id": 3,
    }
    assert await _through_ours({"jsonrpc": "2.0", "method": "echo"}) is None
    assert await _through_ours([{"jsonrpc": "2.0", "method": "echo", "id": 1}]) == [
        {"jsonrpc": "2.0", "result": {"params": []}, "id": 1}
    ]


# -- the quick parameter check ---------------------------------------------------------------

REGISTRY = build_registry(AdminContext(None, None, None))  # type: ignore[arg-type]
param_values = (
    scalars
    | st.text(min_size=60, max_size=70)
    | st.text(alphabet=" ab\t", max_size=6)
    | st.sampled_from(["purchase", "refund", "paid", "open", "credited", "rejected"])
    | st.integers(-(2**50), 2**50)
    | st.sampled_from([0, 1, 500, 501, -1, 10**9, 10**9 + 1, 2**40, 2**40 + 1, 1.0, True])
)


@settings(max_examples=600, deadline=None)
@given(
    method=st.sampled_from(sorted(m.name for m in REGISTRY)),
    params=st.dictionaries(
        st.sampled_from(
            ["sid", "address", "limit", "offset", "kind", "since", "status", "outcome",
             "amount", "reason", "idempotency_key", "other"]
        ),
        param_values,
        max_size=5,
    ),
)  # fmt: skip
def test_the_quick_check_accepts_only_what_jsonschema_accepts(method: str, params: Any) -> None:
    rpc_method = REGISTRY.get(method)
    assert rpc_method is not None
    errors = list(_strict_validator()(rpc_method.params_schema()).iter_errors(params))
    if rpc_method._quick(params):
        assert errors == [], (method, params)
    assert (rpc_method.check_params(params) is None) == (errors == [])


def test_the_quick_check_passes_the_calls_the_bench_makes() -> None:
    """Else every call would go to jsonschema again, and the daemon would load it."""
    billing_get = REGISTRY.get("billing_get")
    assert billing_get is not None
    assert billing_get._quick({"sid": "u_0123456789abcdef"})
    assert not billing_get._quick({"sid": ""})
    assert not billing_get._quick({"sid": "a", "x": 1})
    assert not billing_get._quick({"sid": 5})
