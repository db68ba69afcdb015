"""Numbers JSON allows but Python's json turns into inf or a float: never a 500, nothing run.

`json.loads` reads `1e999` as inf. An id or a param like that used to run the call and then
fail to serialise the answer (HTTP 500 with a traceback; a whole batch lost).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from hero_onboarding.rpc import server as rpc_server
from hero_onboarding.rpc.registry import Param, Registry
from hero_onboarding.store import Store
from tests.admin_kit import AdminHandle, running_admin, running_rpc, short_socket_dir
from tests.conftest import balance_of, register

ADDRESS = "4a1:2b3c:4d5e:6f70:8192:a3b4:c5d6:e7f8"


@pytest.fixture
async def admin(settings, store):
    async with running_admin(replace(settings, socket_dir=short_socket_dir()), store) as handle:
        yield handle


async def post(admin: AdminHandle, body: str) -> tuple[int, str]:
    async with admin.client._session.post("http://localhost/rpc", data=body) as response:
        return response.status, await response.text()


def adjust(sid: str, *, id_text: str = "1", amount: str = "123", key: str = "key-number-1") -> str:
    """A billing_adjust call as raw text, so the id and amount can be any JSON number."""
    return (
        f'{{"jsonrpc": "2.0", "id": {id_text}, "method": "billing_adjust", "params": '
        f'{{"sid": "{sid}", "amount": {amount}, "reason": "numbers", "idempotency_key": "{key}"}}}}'
    )


@pytest.mark.parametrize(
    "id_text", ["1e999", "-1e999", "1.5", "-0.25", "true", "false", "{}", '{"a": 1}', "[1]"]
)
async def test_a_bad_id_is_an_invalid_request_and_nothing_runs(
    admin: AdminHandle, store: Store, id_text: str
) -> None:
    user = await register(store, ADDRESS)
    status, text = await post(admin, adjust(user.sid, id_text=id_text))
    assert status == 200, text
    answer = json.loads(text)
    assert answer["error"]["code"] == -32600
    assert answer["id"] is None
    assert "Traceback" not in text
    assert await balance_of(store, user.sid) == 0


@pytest.mark.parametrize(("id_text", "echoed"), [("1.0", 1), ("1e3", 1000), ('"x"', "x")])
async def test_an_integral_float_id_is_accepted(
    admin: AdminHandle, store: Store, id_text: str, echoed: object
) -> None:
    user = await register(store, ADDRESS)
    status, text = await post(admin, adjust(user.sid, id_text=id_text))
    assert status == 200
    answer = json.loads(text)
    assert answer["result"]["balance"] == 123
    assert answer["id"] == echoed


async def test_in_a_batch_a_bad_id_costs_only_its_own_answer(
    admin: AdminHandle, store: Store
) -> None:
    user = await register(store, ADDRESS)
    body = (
        f"[{adjust(user.sid, id_text='1e999', key='key-batch-1')},"
        f"{adjust(user.sid, id_text='2', key='key-batch-2')},"
        f"{adjust(user.sid, id_text='2.5', key='key-batch-3')}]"
    )
    status, text = await post(admin, body)
    assert status == 200, text
    answers = json.loads(text)
    assert len(answers) == 3
    good = [a for a in answers if a["id"] == 2]
    assert good[0]["result"]["balance"] == 123
    bad = [a for a in answers if a["id"] is None]
    assert [a["error"]["code"] for a in bad] == [-32600, -32600]
    assert await balance_of(store, user.sid) == 123


@pytest.mark.parametrize("amount", ["1e999", "-1e999"])
async def test_a_non_finite_param_is_invalid_params_and_nothing_runs(
    admin: AdminHandle, store: Store, amount: str
) -> None:
    user = await register(store, ADDRESS)
    status, text = await post(admin, adjust(user.sid, id_text="9", amount=amount))
    assert status == 200, text
    answer = json.loads(text)
    assert answer["error"]["code"] == -32602
    assert answer["id"] == 9
    assert await balance_of(store, user.sid) == 0


async def test_a_non_finite_number_deep_in_params_is_invalid_params(admin: AdminHandle) -> None:
    deep = '{"a": ' * 50 + "1e999" + "}" * 50
    body = f'{{"jsonrpc": "2.0", "id": 3, "method": "user_list", "params": {deep}}}'
    status, text = await post(admin, body)
    assert status == 200
    assert json.loads(text)["error"]["code"] == -32602


async def test_grammar_refusals_stay_parse_errors(admin: AdminHandle) -> None:
    for literal in ("NaN", "Infinity", "-Infinity"):
        status, text = await post(admin, f'{{"jsonrpc": "2.0", "method": "info", "id": {literal}}}')
        assert (status, json.loads(text)["error"]["code"]) == (200, -32700)


async def test_a_failure_past_every_check_is_an_internal_error_not_a_500(
    admin: AdminHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call failing while answered costs its own answer; anything else escaping is still
    a JSON-RPC -32603 with HTTP 200 (the last-resort guard), never a 500 or a traceback."""

    async def broken_call(request, entry):
        raise RuntimeError("a bug, with a secret sk_test_123 in its text")

    def broken_check(entry):
        raise RuntimeError("a bug in the checks, sk_test_456")

    single = '{"jsonrpc": "2.0", "id": 1, "method": "info"}'
    for target, replacement, body, expect_list in (
        ("_dispatch", broken_call, single, False),
        ("_dispatch", broken_call, f"[{single}]", True),
        ("refuse_numbers", broken_check, single, False),
        ("refuse_numbers", broken_check, f"[{single}, {single}]", False),
    ):
        with monkeypatch.context() as patched:
            patched.setattr(rpc_server, target, replacement)
            status, text = await post(admin, body)
        assert status == 200
        answer = json.loads(text)
        assert isinstance(answer, list) == expect_list
        for one in answer if expect_list else [answer]:
            assert one["error"]["code"] == -32603
            assert "correlation_id" in one["error"]["data"]
        assert "sk_test" not in text
        assert "Traceback" not in text


def echo_registry() -> Registry:
    registry = Registry()

    @registry.method("echo", "Answers with its number.", params=(Param("x", {"type": "number"}),))
    async def echo(x: float = 0) -> float:
        return x

    @registry.method("unbounded", "Answers with a number JSON cannot carry.")
    async def unbounded() -> float:
        return math.inf

    return registry


async def test_a_non_finite_number_a_schema_allows_is_still_invalid_params() -> None:
    async with running_rpc(echo_registry(), short_socket_dir() / "rpc.sock") as handle:
        for amount in ("1e999", "-1e999"):
            body = f'{{"jsonrpc": "2.0", "id": 4, "method": "echo", "params": {{"x": {amount}}}}}'
            status, text = await post(handle, body)
            assert status == 200, text
            answer = json.loads(text)
            assert (answer["id"], answer["error"]["code"]) == (4, -32602)
            assert "finite" in answer["error"]["message"]
        status, text = await post(
            handle, '{"jsonrpc": "2.0", "id": 5, "method": "echo", "params": {"x": 2.5}}'
        )
        assert json.loads(text)["result"] == 2.5


async def test_a_result_json_cannot_carry_costs_only_its_own_answer() -> None:
    async with running_rpc(echo_registry(), short_socket_dir() / "rpc.sock") as handle:
        status, text = await post(
            handle,
            '[{"jsonrpc": "2.0", "id": 1, "method": "unbounded"},'
            ' {"jsonrpc": "2.0", "id": 2, "method": "echo", "params": {"x": 7}}]',
        )
        assert status == 200, text
        answers = {a["id"]: a for a in json.loads(text)}
        assert answers[1]["error"]["code"] == -32603
        assert answers[2]["result"] == 7


async def test_a_notification_with_a_non_finite_param_runs_nothing_and_gets_no_answer() -> None:
    calls: list[float] = []
    registry = Registry()

    @registry.method("note", "Records its number.", params=(Param("x", {"type": "number"}),))
    async def note(x: float = 0) -> None:
        calls.append(x)

    async with running_rpc(registry, short_socket_dir() / "rpc.sock") as handle:
        status, text = await post(
            handle, '{"jsonrpc": "2.0", "method": "note", "params": {"x": 1e999}}'
        )
        assert (status, text) == (204, "")
        status, text = await post(
            handle,
            '[{"jsonrpc": "2.0", "method": "note", "params": {"x": -1e999}},'
            ' {"jsonrpc": "2.0", "id": 1, "method": "note", "params": {"x": 1.5}}]',
        )
        assert status == 200
        assert json.loads(text) == [{"jsonrpc": "2.0", "result": None, "id": 1}]
    assert calls == [1.5]
