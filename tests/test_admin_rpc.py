"""The admin daemon over its real Unix socket: JSON-RPC 2.0, OpenRPC, the methods, the audit."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from dataclasses import replace
from typing import Any

import apsw
import openrpc
import pytest

from hero_onboarding.payments.stripe_provider import StripeCheckouts
from hero_onboarding.primitives import Secret, StartupError
from hero_onboarding.rpc.client import RpcError
from hero_onboarding.rpc.registry import Registry
from hero_onboarding.rpc.server import bind_unix_socket
from hero_onboarding.store import Store
from tests.admin_kit import AdminHandle, running_admin, running_rpc, short_socket_dir
from tests.conftest import balance_of, open_checkout, register, sandbox_config, start_sandbox
from tests.sandbox_kit import API_KEY, Harness

ADDRESS = "4a1:2b3c:4d5e:6f70:8192:a3b4:c5d6:e7f8"


@pytest.fixture
def admin_settings(settings):
    return replace(settings, socket_dir=short_socket_dir())


@pytest.fixture
async def admin(admin_settings, store):
    async with running_admin(admin_settings, store) as handle:
        yield handle


async def post(admin: AdminHandle, payload) -> tuple[int, Any]:
    async with admin.client._session.post(
        "http://localhost/rpc",
        data=payload if isinstance(payload, (bytes, str)) else json.dumps(payload),
    ) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None


# -- JSON-RPC 2.0 conformance over the socket ------------------------------------------------


async def test_a_single_call_answers_with_its_id(admin: AdminHandle, store: Store) -> None:
    status, answer = await post(admin, {"jsonrpc": "2.0", "id": 7, "method": "info"})
    assert status == 200
    assert answer["id"] == 7
    assert answer["jsonrpc"] == "2.0"
    assert answer["result"]["service"] == "hero_onboarding_admin"


async def test_a_batch_answers_every_call_but_no_notification(admin: AdminHandle) -> None:
    status, answer = await post(
        admin,
        [
            {"jsonrpc": "2.0", "id": 1, "method": "info"},
            {"jsonrpc": "2.0", "method": "info"},
            {"jsonrpc": "2.0", "id": 2, "method": "nope"},
        ],
    )
    assert status == 200
    assert sorted(a["id"] for a in answer) == [1, 2]
    assert next(a for a in answer if a["id"] == 2)["error"]["code"] == -32601


@pytest.mark.parametrize(
    "payload",
    [
        {"jsonrpc": "2.0", "method": "info"},
        [{"jsonrpc": "2.0", "method": "info"}, {"jsonrpc": "2.0", "method": "ledger_verify"}],
    ],
)
async def test_notifications_get_204_and_no_body(admin: AdminHandle, payload) -> None:
    assert await post(admin, payload) == (204, None)


def call(method: str, params: object = None) -> str:
    body = {"jsonrpc": "2.0", "method": method, "id": 1}
    if params is not None:
        body["params"] = params
    return json.dumps(body)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ("[]", -32600),
        ('{"jsonrpc": "2.0", "method": 5, "id": 1}', -32600),
        ("{not json", -32700),
        (b"\xff\xfe", -32700),
        (call("no_such_method"), -32601),
        (call("billing_get"), -32602),
        (call("billing_get", {"sid": 5}), -32602),
        (call("billing_get", {"sid": "a", "x": 1}), -32602),
        (call("billing_get", ["a"]), -32602),
        (call("user_list", {"limit": 0}), -32602),
    ],
)
async def test_bad_requests_get_the_spec_error_codes_with_http_200(
    admin: AdminHandle, payload, code: int
) -> None:
    status, answer = await post(admin, payload)
    assert status == 200
    assert answer["error"]["code"] == code
    if code in (-32700, -32600):
        assert answer["id"] is None


async def test_bad_params_say_which_and_why(admin: AdminHandle) -> None:
    with pytest.raises(RpcError) as caught:
        await admin.client.call("billing_get", {"sid": 5})
    assert caught.value.code == -32602
    assert caught.value.message == "invalid params: sid: 5 is not of type 'string'"
    with pytest.raises(RpcError, match="'sid' is a required property"):
        await admin.client.call("billing_get", {})


async def test_an_unexpected_exception_is_an_internal_error_with_a_correlation_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = Registry()

    @registry.method("explode", "Fails.")
    async def explode() -> None:
        raise RuntimeError("secret internals /var/lib/thing")

    async with running_rpc(registry, short_socket_dir() / "rpc.sock") as handle:
        status, answer = await post(handle, {"jsonrpc": "2.0", "id": 1, "method": "explode"})
    assert status == 200
    error = answer["error"]
    assert (error["code"], error["message"]) == (-32603, "internal error")
    correlation = error["data"]["correlation_id"]
    assert "secret internals" not in json.dumps(answer)
    assert "secret internals" in caplog.text
    assert correlation in caplog.text


# -- the HTTP surface of the Hero socket spec ----------------------------------------------


async def test_openrpc_document_is_valid_and_lists_exactly_what_answers(
    admin: AdminHandle,
) -> None:
    status, document = await admin.client.get("/openrpc.json")
    assert status == 200
    parsed = openrpc.OpenRPC.model_validate(document)  # a third party's reading of the spec
    assert parsed.openrpc.startswith("1.")
    listed = sorted(m["name"] for m in document["methods"])
    assert listed == sorted([
        "billing_adjust", "billing_get", "checkout_list", "delivery_list", "dispute_list", "info",
        "ledger_verify", "payment_list", "reconcile", "rpc.discover", "user_get", "user_list",
    ])  # fmt: skip
    for name in listed:  # every listed method answers (never "method not found")
        _, answer = await post(admin, {"jsonrpc": "2.0", "id": 1, "method": name, "params": {}})
        assert answer.get("error", {}).get("code") != -32601, name
    _, answer = await post(admin, {"jsonrpc": "2.0", "id": 1, "method": "nope"})
    assert answer["error"]["code"] == -32601
    assert await admin.client.call("rpc.discover") == document
    adjust = next(m for m in document["methods"] if m["name"] == "billing_adjust")
    assert {p["name"] for p in adjust["params"] if p["required"]} == {
        "sid", "amount", "reason", "idempotency_key",
    }  # fmt: skip
    assert {e["code"] for e in adjust["errors"]} == {-32004, -32010, -32011, -32014, -32015}
    payments = next(m for m in document["methods"] if m["name"] == "payment_list")
    assert payments["result"]["schema"]["properties"]["payments"]["items"]["required"]
    reconcile = next(m for m in document["methods"] if m["name"] == "reconcile")
    assert {e["code"] for e in reconcile["errors"]} == {-32012, -32013, -32014, -32015, -32016}
    assert "run_id" in reconcile["result"]["schema"]["required"]
    info = next(m for m in document["methods"] if m["name"] == "info")
    assert {"last_run", "last_success", "next_due"} <= set(
        info["result"]["schema"]["properties"]["reconcile"]["required"]
    )


async def test_health_and_the_service_manifest(admin: AdminHandle) -> None:
    status, health = await admin.client.get("/health")
    assert status == 200
    assert health == {
        "status": "ok",
        "service": "hero_onboarding_admin",
        "version": "0.1.0",
        "pid": os.getpid(),
    }
    status, manifest = await admin.client.get("/.well-known/heroservice.json")
    assert status == 200
    assert manifest["protocol"] == "openrpc"
    assert manifest["name"] == "hero_onboarding_admin"
    assert manifest["socket"] == "rpc"


async def test_the_socket_is_private_and_a_stale_one_is_replaced(admin_settings, store) -> None:
    path = admin_settings.admin_socket_path
    path.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # bound, never listening: what a killed daemon leaves behind
    stale.close()
    async with running_admin(admin_settings, store) as handle:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        assert (await handle.client.call("info"))["version"]
        with pytest.raises(StartupError, match="already answering"):
            bind_unix_socket(path)  # the lock says a daemon owns it, listening or not yet


def test_directories_made_for_the_socket_are_private() -> None:
    root = short_socket_dir()
    path = root / "hero" / "sockets" / "svc" / "rpc.sock"
    bound = bind_unix_socket(path)
    try:
        for made in (root / "hero", root / "hero" / "sockets", path.parent):
            assert stat.S_IMODE(os.stat(made).st_mode) == 0o700, made
    finally:
        bound.release()
    assert not path.exists()


def test_a_daemon_only_removes_its_own_socket() -> None:
    path = short_socket_dir() / "svc" / "rpc.sock"
    first = bind_unix_socket(path)
    os.close(first.lock_fd)  # as if the lock were lost: another daemon takes the path
    first.lock_fd = os.open(os.devnull, os.O_RDONLY)
    second = bind_unix_socket(path)
    try:
        first.release()
        assert path.exists()  # not ours any more: left for the second daemon
    finally:
        second.release()
    assert not path.exists()


async def test_the_public_daemon_exposes_no_admin_method(client) -> None:
    async with client.post("/rpc", json={"jsonrpc": "2.0", "id": 1, "method": "info"}) as response:
        assert response.status in (403, 404, 405)
    for path in ("/openrpc.json", "/.well-known/heroservice.json"):
        async with client.get(path) as response:
            assert response.status == 404


def test_a_socket_path_too_long_is_a_clear_startup_error(tmp_path) -> None:
    with pytest.raises(StartupError, match="longer than the 107 bytes"):
        bind_unix_socket(tmp_path / ("x" * 120) / "rpc.sock")


# -- the methods -----------------------------------------------------------------------------


async def test_user_and_balance_lookups(admin: AdminHandle, store: Store) -> None:
    user = await register(store, ADDRESS)
    by_address = await admin.client.call(
        "user_get", {"address": "04A1:2B3C:4D5E:6F70:8192:A3B4:C5D6:E7F8"}
    )
    by_sid = await admin.client.call("user_get", {"sid": user.sid})
    assert by_address == by_sid
    assert by_sid["balance"]["formatted"] == "0.00 USD"
    assert (await admin.client.call("billing_get", {"sid": user.sid}))["balance"] == 0
    listed = await admin.client.call("user_list", {"limit": 10})
    assert listed["total"] == 1
    assert [u["sid"] for u in listed["users"]] == [user.sid]
    for params, code in (
        ({"sid": "nobody"}, -32004),
        ({"address": "2001:db8::1"}, -32602),
        ({"address": ADDRESS, "sid": user.sid}, -32602),
    ):
        with pytest.raises(RpcError) as caught:
            await admin.client.call("user_get", params)
        assert caught.value.code == code


async def test_billing_adjust_is_idempotent_and_audited(admin: AdminHandle, store: Store) -> None:
    user = await register(store, ADDRESS)
    params = {
        "sid": user.sid,
        "amount": 1500,
        "reason": "goodwill",
        "idempotency_key": "ticket-0001",
    }
    first = await admin.client.call("billing_adjust", params)
    again = await admin.client.call("billing_adjust", params)
    assert first["balance"] == 1500
    assert first["replayed"] is False
    assert again == {**first, "replayed": True}
    assert await balance_of(store, user.sid) == 1500

    with pytest.raises(RpcError) as caught:
        await admin.client.call("billing_adjust", {**params, "amount": 1600})
    assert caught.value.code == -32010
    with pytest.raises(RpcError) as caught:
        await admin.client.call(
            "billing_adjust", {**params, "amount": -2000, "idempotency_key": "ticket-0002"}
        )
    assert caught.value.code == -32011
    assert "would make it negative" in caught.value.message
    with pytest.raises(RpcError) as caught:
        await admin.client.call(
            "billing_adjust", {**params, "amount": 0, "idempotency_key": "k" * 9}
        )
    assert caught.value.code == -32602
    assert await balance_of(store, user.sid) == 1500

    rows = await store.read(
        lambda conn: conn.execute(
            "SELECT actor, method, idempotency_key FROM admin_audit"
        ).fetchall()
    )
    assert len(rows) == 1
    actor, method, key = rows[0]
    assert (method, key) == ("billing_adjust", "ticket-0001")
    assert isinstance(actor, str)
    assert f"uid {os.getuid()}" in actor
    payments = await admin.client.call("payment_list", {"sid": user.sid, "kind": "adjustment"})
    assert [(p["amount"], p["provider"]) for p in payments["payments"]] == [(1500, "admin")]


async def test_ledger_verify_finds_a_mismatch_planted_by_raw_sql(
    admin: AdminHandle, admin_settings, store: Store
) -> None:
    user = await register(store, ADDRESS)
    assert await admin.client.call("ledger_verify") == {"ok": True, "mismatches": []}
    conn = apsw.Connection(str(admin_settings.db_path))
    conn.execute(
        "UPDATE billing SET credit_balance = credit_balance + 7 WHERE sid = ?", (user.sid,)
    )
    try:
        found = await admin.client.call("ledger_verify")
        assert found == {
            "ok": False,
            "mismatches": [{"sid": user.sid, "balance": 7, "ledger_sum": 0}],
        }
    finally:
        conn.execute("UPDATE billing SET credit_balance = 0 WHERE sid = ?", (user.sid,))
        conn.close()


async def test_list_methods_filter_and_page(admin: AdminHandle, store: Store) -> None:
    user = await register(store, ADDRESS)
    for n in range(3):
        await admin.client.call(
            "billing_adjust",
            {
                "sid": user.sid,
                "amount": 100 + n,
                "reason": "seed",
                "idempotency_key": f"seed-key-{n}",
            },
        )
    page = await admin.client.call("payment_list", {"limit": 2})
    assert [p["amount"] for p in page["payments"]] == [102, 101]
    rest = await admin.client.call("payment_list", {"limit": 2, "offset": 2})
    assert [p["amount"] for p in rest["payments"]] == [100]
    assert (await admin.client.call("checkout_list", {"status": "open"}))["checkouts"] == []
    assert (await admin.client.call("delivery_list", {"outcome": "credited"}))["deliveries"] == []


# -- reconcile ---------------------------------------------------------------------------------


async def test_reconcile_credits_a_paid_session_whose_webhook_never_came_once(
    aiohttp_server, admin_settings, store: Store
) -> None:
    sandbox: Harness = await start_sandbox(aiohttp_server, sandbox_config(None))  # no webhooks
    user = await register(store, ADDRESS)
    reconciler = StripeCheckouts(Secret(API_KEY), api_base=sandbox.url)
    try:
        session = await sandbox.new_session(
            client_reference_id=user.sid, metadata={"sid": user.sid}
        )
        await open_checkout(store, user.sid, session.id, 1000)
        assert (await sandbox.pay(session.url)).status == 303
        unpaid = await sandbox.new_session(client_reference_id=user.sid)  # open: not to credit
        async with running_admin(admin_settings, store, reconciler=reconciler) as admin:
            first = await admin.client.call("reconcile", {"since": session.created - 10})
            second = await admin.client.call("reconcile", {"since": session.created - 10})
        assert first["checked"] == 1
        paid = await sandbox.sdk.v1.checkout.sessions.retrieve_async(session.id)
        assert first["credited"] == [
            {"checkout_id": session.id, "payment": paid.payment_intent, "sid": user.sid,
             "amount": 1000, "currency": "usd"}
        ]  # fmt: skip
        assert second["credited"] == []
        assert second["already_done"] == 1
        assert await balance_of(store, user.sid) == 1000
        assert unpaid.id not in json.dumps(first)
    finally:
        await reconciler.close()
        await sandbox.close()


async def test_reconcile_says_why_it_cannot_run(admin_settings, store: Store) -> None:
    async with running_admin(admin_settings, store) as admin:
        with pytest.raises(RpcError) as caught:
            await admin.client.call("reconcile")
    assert caught.value.code == -32012
    assert "STRIPE_SANDBOX_SECRET_KEY" in caught.value.message

    dead = StripeCheckouts(Secret(API_KEY), api_base="http://127.0.0.1:9")
    try:
        async with running_admin(admin_settings, store, reconciler=dead) as admin:
            with pytest.raises(RpcError) as caught:
                await admin.client.call("reconcile")
        assert caught.value.code == -32013
        assert API_KEY not in caught.value.message
    finally:
        await dead.close()


# -- hostile requests ----------------------------------------------------------------------


async def test_each_batch_entry_gets_its_own_answer(admin: AdminHandle) -> None:
    status, answer = await post(
        admin, [{"jsonrpc": "2.0", "id": 1, "method": "info"}, {"foo": "bar"}, 3]
    )
    assert status == 200
    assert len(answer) == 3
    assert answer[0]["result"]["service"] == "hero_onboarding_admin"
    assert [a["error"]["code"] for a in answer[1:]] == [-32600, -32600]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ('{"jsonrpc": "2.0", "method": "info", "id": NaN}', -32700),
        ('{"jsonrpc": "2.0", "method": "info", "id": Infinity}', -32700),
        (call("billing_get", {"sid": "\ud800"}), -32602),
        (call("user_list", {"offset": 2**70}), -32602),
        (call("user_list", {"limit": 10.0}), -32602),
        (call("billing_adjust", {"sid": "s", "amount": 1e3, "reason": "why",
                                 "idempotency_key": "kkkkkkkk"}), -32602),
        (call("billing_adjust", {"sid": "s", "amount": 5, "reason": "      ",
                                 "idempotency_key": "kkkkkkkk"}), -32602),
        (call("billing_adjust", {"sid": "s", "amount": 5, "reason": "why", "caller": "me",
                                 "idempotency_key": "kkkkkkkk"}), -32602),
    ],
)  # fmt: skip
async def test_hostile_params_are_invalid_params_not_internal_errors(
    admin: AdminHandle, payload: str, code: int
) -> None:
    status, answer = await post(admin, payload)
    assert status == 200
    assert answer["error"]["code"] == code
    assert "Traceback" not in json.dumps(answer)


async def test_a_body_too_large_is_a_json_rpc_error(admin: AdminHandle) -> None:
    status, answer = await post(admin, "[" + ",".join(["1"] * 600_000) + "]")
    assert status == 200
    assert answer["error"]["code"] == -32600


async def test_concurrent_identical_adjustments_credit_once(admin: AdminHandle, store: Store):
    user = await register(store, ADDRESS)
    params = {"sid": user.sid, "amount": 700, "reason": "goodwill", "idempotency_key": "same-key-1"}
    answers = await asyncio.gather(
        *(admin.client.call("billing_adjust", params) for _ in range(30))
    )
    assert sum(not a["replayed"] for a in answers) == 1
    assert await balance_of(store, user.sid) == 700


async def test_reconcile_applies_a_refund_whose_webhook_came_too_early(
    aiohttp_server, admin_settings, store: Store
) -> None:
    sandbox: Harness = await start_sandbox(aiohttp_server, sandbox_config(None))
    user = await register(store, ADDRESS)
    reconciler = StripeCheckouts(Secret(API_KEY), api_base=sandbox.url)
    try:
        session = await sandbox.new_session(
            client_reference_id=user.sid, metadata={"sid": user.sid}
        )
        await open_checkout(store, user.sid, session.id, 1000)
        await sandbox.pay(session.url)
        paid = await sandbox.sdk.v1.checkout.sessions.retrieve_async(session.id)
        assert isinstance(paid.payment_intent, str)
        await sandbox.sdk.v1.refunds.create_async(
            {"payment_intent": paid.payment_intent, "amount": 400}
        )
        async with running_admin(admin_settings, store, reconciler=reconciler) as admin:
            done = await admin.client.call("reconcile", {"since": session.created - 10})
            again = await admin.client.call("reconcile", {"since": session.created - 10})
        assert [c["amount"] for c in done["credited"]] == [1000]
        assert [r["amount"] for r in done["reversed"]] == [-400]
        assert again["credited"] == again["reversed"] == []
        assert again["already_done"] == again["checked"]  # the purchase and each refund report
        assert await balance_of(store, user.sid) == 600
        audited = await store.read(
            lambda conn: conn.execute(
                "SELECT method, json_extract(result, '$.amount') FROM admin_audit ORDER BY id"
            ).fetchall()
        )
        assert audited == [("reconcile", 1000), ("reconcile", -400)]
    finally:
        await reconciler.close()
        await sandbox.close()


# -- what the admin daemon loads (RSS: README, Performance) ---------------------------------

LOADED_AT_START = """
import asyncio, json, sys
import hero_onboarding.control.cli
from hero_onboarding.admin.methods import AdminContext, build_registry
from hero_onboarding.rpc.server import create_rpc_app, METHODS
from hero_onboarding.admin.server import SERVICE

async def one_good_call():
    app = create_rpc_app(build_registry(AdminContext(None, None, None)), SERVICE)
    # a valid call's parameters pass the quick check: jsonschema is not needed for it
    return await app[METHODS]["rpc.discover"](None, {})

reply = asyncio.run(one_good_call())
assert reply.error is None, reply
print(json.dumps(sorted(m for m in ("cryptography", "jsonschema", "jsonrpcserver")
                        if m in sys.modules)))
"""


@pytest.mark.process
def test_the_admin_daemon_loads_no_crypto_no_jsonschema_no_jsonrpcserver() -> None:
    """cryptography (~8 MiB: only login proofs use it), jsonschema (only a refused call needs
    it) and jsonrpcserver (replaced) stay out of the admin daemon's memory."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", LOADED_AT_START], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
