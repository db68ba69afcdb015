"""The real `hero-onboarding server` process: durability across SIGKILL, clean stop, bad starts."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request

import apsw
import pytest

from hero_onboarding.store import Store
from tests.conftest import SIGNING_SECRET, register
from tests.processes import free_port, run_cli, start_server
from tests.sandbox_kit import API_KEY
from tests.seeding import checkout, insert_checkouts
from tests.stripe_events import body_of, checkout_event, new_id, sign

pytestmark = pytest.mark.process  # every test here starts real processes

ENV = {"STRIPE_WEBHOOK_SIGNING_KEY": SIGNING_SECRET, "STRIPE_SANDBOX_SECRET_KEY": API_KEY}
E = "hero-onboarding: error: "


def post_event(url: str, evt: dict) -> tuple[int, bytes]:
    body = body_of(evt)
    request = urllib.request.Request(
        url + "/webhooks/stripe",
        data=body.encode(),
        headers={
            "Stripe-Signature": sign(body, SIGNING_SECRET),
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.status, resp.read()


def balance_in_file(db_path, sid: str) -> int:
    conn = apsw.Connection(str(db_path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return conn.execute("SELECT credit_balance FROM billing WHERE sid = ?", (sid,)).get
    finally:
        conn.close()


def make_user(db_path) -> str:
    async def go() -> str:
        store = await Store.open(db_path)
        try:
            return (await register(store, "5a0::42")).sid
        finally:
            await store.close()

    return asyncio.run(go())


def open_checkouts_of(db_path, *events: dict) -> None:
    """The checkouts these events pay, recorded as the service does when it opens them."""
    conn = apsw.Connection(str(db_path))
    try:
        conn.set_busy_timeout(5000)
        with conn:
            insert_checkouts(
                conn,
                (
                    checkout(obj["client_reference_id"], obj["id"], obj["amount_total"])
                    for obj in (evt["data"]["object"] for evt in events)
                ),
            )
    finally:
        conn.close()


def test_credit_survives_sigkill_and_restart(tmp_path):
    data_dir = tmp_path / "data"
    sid = make_user(data_dir / "onboarding.db")
    first = checkout_event(
        "checkout.session.completed", sid=sid, amount=1700, payment_intent=new_id("pi")
    )
    second = checkout_event(
        "checkout.session.completed", sid=sid, amount=300, payment_intent=new_id("pi")
    )
    open_checkouts_of(data_dir / "onboarding.db", first, second)
    port = free_port()
    server = start_server(data_dir, port=port, env=ENV)
    try:
        assert post_event(server.url, first) == (200, b'{"received": true, "outcome": "credited"}')
    finally:
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
    assert balance_in_file(data_dir / "onboarding.db", sid) == 1700

    server = start_server(data_dir, port=port, env=ENV)
    try:
        # The same payment again after the crash: still credited once.
        assert post_event(server.url, first)[1] == b'{"received": true, "outcome": "duplicate"}'
        assert post_event(server.url, second)[0] == 200
    finally:
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=10) == 0
    assert balance_in_file(data_dir / "onboarding.db", sid) == 2000


def test_sigterm_stops_cleanly_within_a_few_seconds(tmp_path):
    server = start_server(tmp_path / "data", port=free_port(), env=ENV)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    log = server.log()
    assert "stopped" in log
    assert "Traceback" not in log
    assert SIGNING_SECRET not in log


def test_sigint_stops_cleanly(tmp_path):
    server = start_server(tmp_path / "data", port=free_port(), env=ENV)
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=10) == 0


def test_port_in_use_is_one_line_and_exit_1(tmp_path):
    server = start_server(tmp_path / "data", port=free_port(), env=ENV)
    try:
        result = run_cli(
            "server", "--data-dir", str(tmp_path / "data2"), "--port", str(server.port), env=ENV
        )
    finally:
        server.process.terminate()
        server.process.wait(timeout=10)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors == [f"{E}cannot listen on 127.0.0.1:{server.port}: address already in use"]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            ["server", "--port", "nope"],
            ENV,
            E + "--port='nope': must be a whole number",
        ),
        (
            ["server"],
            {**ENV, "STRIPE_WEBHOOK_SIGNING_KEY": ""},
            E + "STRIPE_WEBHOOK_SIGNING_KEY is not set (looked in: hero_proc at "
            "/nonexistent/hero_proc/rpc.sock (not running), environment)",
        ),
        (
            ["server"],
            {**ENV, "STRIPE_SANDBOX_SECRET_KEY": " "},
            E + "STRIPE_SANDBOX_SECRET_KEY is not set (looked in: hero_proc at "
            "/nonexistent/hero_proc/rpc.sock (not running), environment); "
            "--provider=stripe needs it",
        ),
        (
            ["server"],
            {**ENV, "STRIPE_WEBHOOK_SIGNING_KEY": f"{SIGNING_SECRET},sk_test_oops"},
            E + "STRIPE_WEBHOOK_SIGNING_KEY: entry 2 of 2 is not a Stripe webhook "
            "signing secret (they start with whsec_)",
        ),
        (
            ["server"],
            {**ENV, "HERO_ONBOARDING_SANDBOX_KEYS_FILE": "/tmp/keys.json"},
            E + "HERO_ONBOARDING_SANDBOX_KEYS_FILE is set, but sandbox keys serve only "
            "--mode=sandbox: unset it",
        ),
        (
            ["server", "--mode", "sandbox"],
            {**ENV, "HERO_ONBOARDING_SANDBOX_KEYS_FILE": "/nonexistent/keys.json"},
            E + "the sandbox keys file /nonexistent/keys.json is gone; --restart --sandbox "
            "makes new ones",
        ),
        (["server", "--bogus"], ENV, E + "No such option '--bogus'."),
        (["nosuch"], ENV, E + "No such command 'nosuch'."),
        (
            ["server"],
            {**ENV, "HERO_ONBOARDING_CURRENCY": "1"},
            E + "HERO_ONBOARDING_CURRENCY='1': must be a three-letter ISO 4217 code",
        ),
    ],
)
def test_bad_invocations_exit_2_with_one_line(tmp_path, args, env, expected):
    result = run_cli(*args, env={"HERO_ONBOARDING_DATA_DIR": str(tmp_path / "d"), **env})
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(expected)
    assert "sk_test_oops" not in result.stderr


def test_help_documents_exit_codes():
    result = run_cli("server", "--help", env={})
    assert result.returncode == 0
    assert "Exit codes:" in result.stdout
    assert "HERO_ONBOARDING_PORT" in result.stdout


def test_a_database_from_a_newer_version_stops_boot_with_one_line(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    conn = apsw.Connection(str(data_dir / "onboarding.db"))
    conn.execute("PRAGMA user_version=99")
    conn.close()
    result = run_cli("server", "--data-dir", str(data_dir), "--port", str(free_port()), env=ENV)
    assert result.returncode == 1
    assert "newer than this program" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unusable_data_dir_is_one_line_and_exit_1(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_cli(
        "server", "--data-dir", str(blocker / "data"), "--port", str(free_port()), env=ENV
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"{E}cannot create data directory {blocker / 'data'}: Not a directory"
    )


def test_version_flag():
    result = run_cli("--version", env={})
    assert result.returncode == 0
    assert result.stdout.startswith("hero-onboarding, version ")
