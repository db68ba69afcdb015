"""The real `hero-onboarding sandbox` process: serves the SDK, keeps state across restarts."""

from __future__ import annotations

import signal

import pytest
import stripe

from tests.conftest import SIGNING_SECRET
from tests.processes import free_port, run_cli, start_daemon
from tests.sandbox_kit import API_KEY, session_params

pytestmark = pytest.mark.process  # every test here starts real processes

E = "hero-onboarding: error: "


def test_sandbox_process_serves_the_sdk_and_survives_a_restart(tmp_path):
    port = free_port()
    state_file = tmp_path / "sandbox-state.json"
    args = ["sandbox", "--port", str(port), "--state-file", str(state_file)]
    env = {"STRIPE_SANDBOX_SECRET_KEY": API_KEY}
    process = start_daemon(args, port=port, ready_path="/health", log_dir=tmp_path, env=env)
    client = stripe.StripeClient(API_KEY, base_addresses={"api": process.url})
    try:
        created = client.v1.checkout.sessions.create(session_params())
        assert created.url is not None
        assert created.url.startswith(f"http://127.0.0.1:{port}/c/pay/cs_test_")
        with pytest.raises(stripe.AuthenticationError):
            stripe.StripeClient(
                "sk_test_other", base_addresses={"api": process.url}
            ).v1.checkout.sessions.list()
    finally:
        process.process.send_signal(signal.SIGTERM)
        assert process.process.wait(timeout=10) == 0
    assert API_KEY not in process.log()
    assert "Stripe sandbox listening on" in process.log()

    process = start_daemon(args, port=port, ready_path="/health", log_dir=tmp_path, env=env)
    try:
        assert client.v1.checkout.sessions.retrieve(created.id).status == "open"
    finally:
        process.process.send_signal(signal.SIGTERM)
        process.process.wait(timeout=10)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--port", "0"], {}, "Invalid value for '--port'"),
        (["--webhook", "ftp://x"], {}, "must be an http:// or https:// URL"),
        (["--webhook", "https://user:pw@example.com/hook"], {}, "must not carry a user name"),
        (
            ["--webhook", "http://127.0.0.1:8780/webhooks/stripe"],
            {"STRIPE_WEBHOOK_SIGNING_KEY": ""},
            "STRIPE_WEBHOOK_SIGNING_KEY is not set",
        ),
        (["--retry-delays", "1,soon"], {}, "not a comma-separated list of seconds"),
        (["--webhook-events", " , "], {}, "give at least one event type"),
    ],
)
def test_bad_invocations_exit_2_with_one_line(tmp_path, args, env, message):
    result = run_cli("sandbox", *args, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(E)
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert ":pw@" not in result.stderr


def test_an_unreadable_state_file_or_a_taken_port_exit_1(tmp_path):
    state_file = tmp_path / "state.json"
    state_file.write_text("{not json")
    result = run_cli("sandbox", "--port", str(free_port()), "--state-file", str(state_file), env={})
    assert result.returncode == 1
    assert result.stderr == f"{E}sandbox state {state_file} is unreadable: " + (
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)\n"
    )

    port = free_port()
    first = start_daemon(
        ["sandbox", "--port", str(port)], port=port, ready_path="/health", log_dir=tmp_path, env={}
    )
    try:
        result = run_cli("sandbox", "--port", str(port), env={})
        assert result.returncode == 1
        assert result.stderr == f"{E}cannot listen on 127.0.0.1:{port}: address already in use\n"
    finally:
        first.process.send_signal(signal.SIGTERM)
        first.process.wait(timeout=10)


def test_webhook_secret_never_appears_in_the_log(tmp_path):
    port = free_port()
    args = ["sandbox", "--port", str(port), "--webhook", "http://127.0.0.1:9/hook"]
    env = {"STRIPE_WEBHOOK_SIGNING_KEY": SIGNING_SECRET}
    process = start_daemon(args, port=port, ready_path="/health", log_dir=tmp_path, env=env)
    try:
        client = stripe.StripeClient(API_KEY, base_addresses={"api": process.url})
        created = client.v1.checkout.sessions.create(session_params())
        client.v1.checkout.sessions.expire(created.id)
    finally:
        process.process.send_signal(signal.SIGTERM)
        process.process.wait(timeout=10)
    log = process.log()
    assert "http://127.0.0.1:9/hook" in log
    assert SIGNING_SECRET not in log
