"""`hero-onboarding stripe-setup`: the real CLI, as a process, against a real sandbox process."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Final

import pytest
import stripe

from hero_onboarding.control import stripe_setup
from hero_onboarding.control.stripe_setup import DESCRIPTION, StripeEndpoints
from hero_onboarding.payments.base import EventKind
from hero_onboarding.payments.stripe_api import API_VERSION, HANDLED_EVENT_TYPES
from hero_onboarding.payments.stripe_provider import StripeWebhooks
from hero_onboarding.primitives import Secret
from tests.conftest import sandbox_config, start_sandbox
from tests.processes import ServerProcess, free_port, run_cli, start_daemon
from tests.sandbox_kit import API_KEY, card_form, run_sync, session_params
from tests.waiting import wait_until

E = "hero-onboarding: error: "
PUBLIC = "https://shop.example"
HOOK = PUBLIC + "/webhooks/stripe"
OLDER_VERSION: Final = "2026-07-29.dahlia"


@dataclass
class Account:
    """A sandbox process standing in for a Stripe account, and the CLI pointed at it."""

    tmp_path: Path
    process: ServerProcess

    @property
    def sdk(self) -> stripe.StripeClient:
        return stripe.StripeClient(API_KEY, base_addresses={"api": self.process.url})

    def setup(self, *args: str, key: str = API_KEY, public: str = PUBLIC) -> Run:
        answer = run_cli(
            "stripe-setup",
            "--stripe-api-base",
            self.process.url,
            "--public-url",
            public,
            *args,
            env={"HOME": str(self.tmp_path), "STRIPE_SANDBOX_SECRET_KEY": key},
        )
        return Run(answer)

    def at(self, url: str = HOOK) -> list[stripe.WebhookEndpoint]:
        return [e for e in self.sdk.v1.webhook_endpoints.list({"limit": 100}).data if e.url == url]

    def stop(self) -> None:
        self.process.process.send_signal(signal.SIGTERM)
        assert self.process.process.wait(timeout=10) == 0


@dataclass
class Run:
    answer: subprocess.CompletedProcess[str]

    @property
    def code(self) -> int:
        return self.answer.returncode

    @property
    def out(self) -> str:
        return self.answer.stdout

    @property
    def err(self) -> str:
        return self.answer.stderr

    def secret(self) -> str:
        lines = [line for line in self.out.splitlines() if line.startswith("signing secret: ")]
        assert len(lines) == 1, self.out
        return lines[0].removeprefix("signing secret: ")

    def one_error_line(self) -> str:
        """The failure as operators see it: one line, no traceback, no key."""
        lines = [
            line
            for line in self.err.splitlines()
            if not line.startswith("hero-onboarding: warning")
        ]
        assert len(lines) == 1, self.err
        assert lines[0].startswith(E)
        assert "Traceback" not in self.err
        assert API_KEY not in self.err + self.out
        return lines[0]


def start_account(tmp_path: Path) -> ServerProcess:
    port = free_port()
    args = ["sandbox", "--port", str(port), "--state-file", str(tmp_path / "sandbox.json")]
    env = {"STRIPE_SANDBOX_SECRET_KEY": API_KEY}
    return start_daemon(args, port=port, ready_path="/health", log_dir=tmp_path, env=env)


@pytest.fixture
def account(tmp_path: Path) -> Iterator[Account]:
    running = Account(tmp_path, start_account(tmp_path))
    yield running
    if running.process.process.poll() is None:
        running.stop()


@pytest.mark.process
def test_a_first_run_creates_the_endpoint_and_a_second_changes_nothing(account: Account) -> None:
    dry = account.setup("--dry-run")
    assert dry.code == 0, dry.err
    assert dry.out.startswith("dry run (test mode): would create a webhook endpoint at " + HOOK)
    assert ",".join(HANDLED_EVENT_TYPES) in dry.out
    assert account.at() == []

    created = account.setup()
    assert created.code == 0, created.err
    secret = created.secret()
    assert secret.startswith("whsec_")
    assert secret not in created.err  # stdout only
    assert "STRIPE_WEBHOOK_SIGNING_KEY" in created.out
    (endpoint,) = account.at()
    assert endpoint.enabled_events == list(HANDLED_EVENT_TYPES)
    assert endpoint.api_version == API_VERSION
    assert endpoint.description == DESCRIPTION
    assert endpoint.status == "enabled"
    assert f"created webhook endpoint {endpoint.id} at {HOOK}" in created.out

    again = account.setup()
    assert again.code == 0, again.err
    assert again.out.strip() == (
        f"webhook endpoint {endpoint.id} at {HOOK} is up to date (test mode); nothing changed"
    )
    assert "whsec_" not in again.out + again.err
    assert [e.id for e in account.at()] == [endpoint.id]

    account.stop()  # the account keeps its endpoint across a restart, as Stripe's does
    account.process = start_account(account.tmp_path)
    assert "up to date" in account.setup().out
    assert secret not in account.process.log()


@pytest.mark.process
def test_drift_is_put_right_and_only_what_differs_changes(account: Account) -> None:
    first = account.setup()
    (endpoint,) = account.at()
    account.sdk.v1.webhook_endpoints.update(
        endpoint.id,
        {"enabled_events": ["checkout.session.completed", "customer.created"], "disabled": True},
    )
    dry = account.setup("--dry-run")
    assert dry.code == 0
    assert "would update" in dry.out
    assert account.at()[0].status == "disabled"  # a dry run changes nothing

    fixed = account.setup()
    assert fixed.code == 0, fixed.err
    assert f"updated webhook endpoint {endpoint.id}" in fixed.out
    assert "drop customer.created" in fixed.out
    assert "checkout.session.expired" in fixed.out.partition("enabled_events: add ")[2]
    assert "status disabled -> enabled" in fixed.out
    assert "description" not in fixed.out  # it did not differ
    assert "whsec_" not in fixed.out  # an update keeps the secret, so none is shown
    (now,) = account.at()
    assert now.id == endpoint.id
    assert now.enabled_events == list(HANDLED_EVENT_TYPES)
    assert now.status == "enabled"
    assert first.secret().startswith("whsec_")


@pytest.mark.process
def test_another_api_version_needs_recreate_which_prints_the_new_secret(account: Account) -> None:
    old = account.sdk.v1.webhook_endpoints.create(
        {"url": HOOK, "enabled_events": list(HANDLED_EVENT_TYPES), "api_version": OLDER_VERSION}
    )
    refused = account.setup()
    assert refused.code == 1
    line = refused.one_error_line()
    assert OLDER_VERSION in line
    assert API_VERSION in line
    assert "--recreate" in line
    assert [e.id for e in account.at()] == [old.id]

    dry = account.setup("--recreate", "--dry-run")
    assert dry.code == 0
    assert f"would delete {old.id} and create" in dry.out
    assert [e.id for e in account.at()] == [old.id]

    redone = account.setup("--recreate")
    assert redone.code == 0, redone.err
    assert f"deleted webhook endpoint {old.id}" in redone.out
    (new,) = account.at()
    assert new.id != old.id
    assert new.api_version == API_VERSION
    assert redone.secret() not in (old.secret, "")
    assert "up to date" in account.setup().out


@pytest.mark.process
def test_several_endpoints_at_the_url_are_refused_until_recreated(account: Account) -> None:
    for _ in range(2):
        account.sdk.v1.webhook_endpoints.create(
            {"url": HOOK, "enabled_events": list(HANDLED_EVENT_TYPES), "api_version": API_VERSION}
        )
    refused = account.setup()
    assert refused.code == 1
    assert "2 webhook endpoints are registered at" in refused.one_error_line()
    assert len(account.at()) == 2
    assert account.setup("--recreate").code == 0
    assert len(account.at()) == 1


@pytest.fixture
def local_receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A webhook receiver on this machine (a thread): its base URL and what it was sent."""
    received: list[tuple[dict[str, str], bytes]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    thread.join(timeout=5)


@pytest.mark.process
def test_the_printed_secret_verifies_what_the_account_delivers(
    account: Account, local_receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    base, received = local_receiver
    created = account.setup(public=base)
    assert created.code == 0, created.err
    secret = created.secret()
    paid = account.sdk.v1.checkout.sessions.create(session_params())
    assert paid.url is not None
    page = urllib.parse.urlsplit(paid.url)
    browser = http.client.HTTPConnection(page.netloc, timeout=10)
    form = urllib.parse.urlencode(card_form())
    browser.request("POST", page.path, form, {"Content-Type": "application/x-www-form-urlencoded"})
    assert browser.getresponse().status == 303  # paid: completed, charge and intent events
    browser.close()
    expired = account.sdk.v1.checkout.sessions.create(session_params())
    account.sdk.v1.checkout.sessions.expire(expired.id)
    wait_until(lambda: len(received) >= 2, timeout=10, what="two deliveries arrive")
    events = {}
    for headers, body in received:
        parsed = StripeWebhooks([Secret(secret)]).parse_webhook(body, headers)
        events[parsed.raw_type] = parsed
        assert json.loads(body)["api_version"] == API_VERSION
    assert events["checkout.session.completed"].kind is EventKind.PAID
    assert events["checkout.session.completed"].checkout_id == paid.id
    assert events["checkout.session.expired"].checkout_id == expired.id
    owed = account.sdk.raw_request("get", "/_sandbox/deliveries", status="pending")
    assert account.sdk.deserialize(owed, api_mode="V1")["data"] == []
    assert len(received) == 2  # payment_intent.* and charge.succeeded are not ours: not sent
    assert secret not in account.process.log()


@pytest.mark.process
@pytest.mark.parametrize(
    ("args", "key", "public", "code", "says"),
    [
        ((), "", PUBLIC, 2, "STRIPE_SANDBOX_SECRET_KEY is not set"),
        ((), "pk_test_abc", PUBLIC, 2, "is not a Stripe secret key"),
        ((), "sk_live_" + "x" * 24, "http://shop.example", 2, "Stripe delivers live events only"),
        ((), "sk_test_" + "y" * 24, PUBLIC, 2, "refused STRIPE_SANDBOX_SECRET_KEY (HTTP 401"),
        (("--public-url", "ftp://x"), API_KEY, PUBLIC, 2, "must be an http:// or https:// URL"),
        ((), API_KEY, PUBLIC + "/" + "p" * 5000, 1, "HTTP 400, code url_invalid, param url"),
    ],
)
def test_bad_input_is_one_line_and_an_exit_code(
    account: Account, args: tuple[str, ...], key: str, public: str, code: int, says: str
) -> None:
    failed = account.setup(*args, key=key, public=public)
    assert failed.code == code, failed.err
    line = failed.one_error_line()
    assert says in line
    if key:
        assert key not in failed.err + failed.out
    assert account.at() == []


@pytest.mark.process
def test_an_unreachable_stripe_is_exit_1(tmp_path: Path) -> None:
    answer = run_cli(
        "stripe-setup", "--stripe-api-base", f"http://127.0.0.1:{free_port()}",
        "--public-url", PUBLIC, "--provider-timeout-s", "2",
        env={"HOME": str(tmp_path), "STRIPE_SANDBOX_SECRET_KEY": API_KEY},
    )  # fmt: skip
    failed = Run(answer)
    assert failed.code == 1
    assert "could not reach http://127.0.0.1:" in failed.one_error_line()


@pytest.mark.process
def test_a_local_public_url_works_on_the_sandbox_with_a_warning(account: Account) -> None:
    local = account.setup(public="http://127.0.0.1:8780")
    assert local.code == 0, local.err
    assert local.err.startswith("hero-onboarding: warning: http://127.0.0.1:8780/webhooks/stripe")
    assert "stripe listen" in local.err
    assert "whsec_" not in local.err
    assert account.at("http://127.0.0.1:8780/webhooks/stripe")


async def test_every_page_of_the_list_is_read(
    aiohttp_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wanted endpoint on the last page is still found (Stripe pages at 100 at most)."""
    monkeypatch.setattr(stripe_setup, "PAGE_SIZE", 2)
    harness = await start_sandbox(aiohttp_server, sandbox_config(None))
    try:
        await harness.sdk.v1.webhook_endpoints.create_async({"url": HOOK, "enabled_events": ["*"]})
        for n in range(4):
            await harness.sdk.v1.webhook_endpoints.create_async(
                {"url": f"https://x.example/{n}", "enabled_events": ["*"]}
            )
        endpoints = StripeEndpoints(Secret(API_KEY), api_base=harness.url, timeout_s=5)
        found = await run_sync(endpoints.at_url, HOOK)
        assert [e["url"] for e in found] == [HOOK]
        listed = [line for line in harness.schema_failures]
        assert listed == []
    finally:
        await harness.close()


DOC = Path(__file__).parent.parent / "docs" / "stripe-test-mode.md"


def test_the_docs_stripe_listen_line_names_exactly_the_handled_events() -> None:
    """The doc's `stripe listen` line is what operators paste: it must track the constant."""
    lines = [line for line in DOC.read_text().splitlines() if line.startswith("stripe listen ")]
    assert lines, "docs/stripe-test-mode.md lost its stripe listen line"
    for line in lines:
        flags = line.split()
        assert flags[flags.index("--events") + 1] == ",".join(HANDLED_EVENT_TYPES)
        assert flags[flags.index("--events-from") + 1] == "@self"
        assert flags[flags.index("--forward-to") + 1] == "localhost:8780/webhooks/stripe"
    text = DOC.read_text()
    assert f"API version {API_VERSION}, {len(HANDLED_EVENT_TYPES)} event types" in text
    assert f"all but the {len(HANDLED_EVENT_TYPES)} above" in text
