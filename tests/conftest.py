"""Shared fixtures: settings in a temp home, a real Store on a real file, the public app."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import apsw
import psutil
import pytest
import stripe
from aiohttp import web
from aiohttp.test_utils import TestClient

from hero_onboarding.config import Settings, load_settings
from hero_onboarding.daemon import create_app
from hero_onboarding.mycelium.messages import SandboxOutbox
from hero_onboarding.payments.stripe_provider import StripeWebhooks
from hero_onboarding.payments.stub import StubCheckouts
from hero_onboarding.primitives import Secret
from hero_onboarding.sandbox.app import create_sandbox_app
from hero_onboarding.sandbox.config import SandboxConfig, WebhookEndpoint
from hero_onboarding.store import Store, balances, checkouts, ledger, users
from hero_onboarding.store.checkouts import CheckoutSession
from hero_onboarding.store.users import User
from tests.login_kit import Browser
from tests.processes import free_port
from tests.sandbox_kit import API_KEY, FakeClock, Harness, Receiver, schema_check_hook
from tests.seeding import checkout
from tests.shop_kit import Relay, Shop, shop_settings, stripe_checkouts

SIGNING_SECRET = "whsec_test_" + "a1" * 16
OTHER_SECRET = "whsec_test_" + "b2" * 16


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/browser/ drives Chromium: one place marks it, not every test."""
    for item in items:
        if "browser" in item.path.parts:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(autouse=True)
def processes_only_when_marked(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test without the `process` (or `browser`) marker may not start a process.

    So `scripts/test --fast` (which leaves those markers out) is truly in-process: a new test
    that spawns the CLI, a daemon or a script fails here until it is marked. asyncio's
    subprocesses and Playwright's driver go through subprocess.Popen as well.
    """
    if request.node.get_closest_marker("process") or request.node.get_closest_marker("browser"):
        return
    name = request.node.nodeid

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{name} starts a process: mark it @pytest.mark.process")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


@pytest.fixture(autouse=True)
def no_process_outlives_its_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """A process a test started is gone once the test's own fixtures are torn down.

    Set up before the test's fixtures (and after wider-scoped ones, whose processes count as
    already there), so its check runs after their teardown. A leftover is killed and fails the
    test by its command line: a leaked daemon holds ports and files into later tests.
    """
    if not (
        request.node.get_closest_marker("process") or request.node.get_closest_marker("browser")
    ):
        yield
        return
    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}
    yield
    deadline = time.monotonic() + 10
    while True:
        left = [
            child
            for child in me.children(recursive=True)
            if child.pid not in before and _running(child)
        ]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if left:
        shown = [" ".join(_cmdline(child))[:200] for child in left]
        for child in left:
            with contextlib.suppress(psutil.Error):
                child.kill()
        pytest.fail(f"{len(left)} process(es) outlived the test: {shown}")


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return [f"pid {process.pid}"]


@pytest.fixture(autouse=True)
def ledger_invariant(tmp_path: Path) -> Iterator[None]:
    """After every test: in every database it wrote, each balance equals the sum of its events."""
    yield
    for db in tmp_path.rglob("onboarding.db"):
        conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            has_ledger = conn.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'payment_events'"
            ).get
            if has_ledger:
                assert ledger.verify_ledger(conn) == [], f"ledger invariant broken in {db}"
        finally:
            conn.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({"HOME": str(tmp_path)}, {"data_dir": str(tmp_path / "data")})


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = await Store.open(
        settings.db_path,
        busy_timeout_ms=settings.db_busy_timeout_ms,
        write_timeout_s=settings.write_timeout_s,
    )
    yield opened
    await opened.close()


async def register(store: Store, address: str, currency: str = "usd") -> User:
    return await store.write(
        partial(users.register, address=address, currency=currency, now=int(time.time()))
    )


@pytest.fixture
async def user(store: Store) -> User:
    return await register(store, "4a1:2b3c:4d5e:6f70:8192:a3b4:c5d6:e7f8")


async def open_checkout(
    store: Store,
    sid: str,
    checkout_id: str,
    amount: int,
    *,
    currency: str = "usd",
    provider: str = "stripe",
) -> CheckoutSession:
    """A checkout as the service records it when it opens one: only these get credited."""
    opened = checkout(sid, checkout_id, amount, currency=currency, provider=provider)
    await store.write(partial(checkouts.insert, checkout=opened))
    return opened


async def balance_of(store: Store, sid: str) -> int:
    found = await store.read(lambda conn: balances.get(conn, sid))
    assert found is not None
    return found.credit_balance


@pytest.fixture
def webhooks() -> StripeWebhooks:
    return StripeWebhooks([Secret(SIGNING_SECRET)], tolerance_s=300)


@pytest.fixture
async def client(
    settings: Settings, store: Store, webhooks: StripeWebhooks, aiohttp_client
) -> TestClient:
    # aiohttp_client last: its app stops before the store it uses is closed.
    return await aiohttp_client(build_app(settings, store, webhooks))


SERVER_LOGIN_KEY = bytes(
    range(100, 132)
)  # the server's x25519 key in tests: fixed, never used live


def build_app(settings: Settings, store: Store, webhooks: StripeWebhooks | None, **overrides: Any):
    """The public app as tests build it: codes go to a sandbox outbox and payments to the stub
    provider, unless told otherwise."""
    options: dict[str, Any] = {
        "messenger": SandboxOutbox(),
        "login_key": SERVER_LOGIN_KEY,
        "checkouts": StubCheckouts(settings.public_url),
    }
    options.update(overrides)
    return create_app(settings, store, (webhooks,) if webhooks else (), **options)


# --- the Stripe sandbox (tests/sandbox_kit.py) ---


@pytest.fixture
async def receiver(aiohttp_server) -> AsyncIterator[Receiver]:
    recording = Receiver()
    app = web.Application()
    app.router.add_post("/webhooks/stripe", recording.handle)
    server = await aiohttp_server(app)
    recording.url = str(server.make_url("/webhooks/stripe"))
    yield recording
    assert recording.schema_failures == []


def sandbox_config(receiver_url: str | None, **overrides: Any) -> SandboxConfig:
    """Fast retries so a test sees the whole retry schedule in well under a second."""
    endpoints = (WebhookEndpoint(receiver_url, (Secret(SIGNING_SECRET),)),) if receiver_url else ()
    values: dict[str, Any] = {
        "port": free_port(),
        "endpoints": endpoints,
        "retry_delays_s": (0.05, 0.05, 0.05),
        "attempt_timeout_s": 5.0,
    }
    values.update(overrides)
    return SandboxConfig(**values)


async def start_sandbox(aiohttp_server, config: SandboxConfig, **app_kwargs: Any) -> Harness:
    app = create_sandbox_app(config, **app_kwargs)
    failures: list[str] = []
    app.on_response_prepare.append(schema_check_hook(failures))
    await aiohttp_server(app, port=config.port)
    sdk_http = stripe.AIOHTTPClient()
    sdk = stripe.StripeClient(  # async over aiohttp, retries on, as the daemon will use it
        API_KEY, http_client=sdk_http, base_addresses={"api": config.base_url},
        max_network_retries=2,
    )  # fmt: skip
    return Harness(config.base_url, app, aiohttp.ClientSession(), sdk, sdk_http, failures)


@pytest.fixture
async def sandbox(aiohttp_server, receiver: Receiver) -> AsyncIterator[Harness]:
    harness = await start_sandbox(aiohttp_server, sandbox_config(receiver.url))
    yield harness
    await harness.close()
    assert harness.schema_failures == []


@pytest.fixture
def stripe_client(sandbox: Harness) -> stripe.StripeClient:
    return sandbox.sdk


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def clocked_sandbox(
    aiohttp_server, receiver: Receiver, clock: FakeClock
) -> AsyncIterator[Harness]:
    """A sandbox whose clock moves only when the test advances `clock`."""
    harness = await start_sandbox(aiohttp_server, sandbox_config(receiver.url), clock=clock)
    yield harness
    await harness.close()
    assert harness.schema_failures == []


# --- the daemon selling through the sandbox (tests/shop_kit.py) ---


@pytest.fixture
async def shop(
    tmp_path: Path, aiohttp_server, aiohttp_client, webhooks: StripeWebhooks
) -> AsyncIterator[Shop]:
    relay = Relay()
    relay_app = web.Application()
    relay_app.router.add_post("/hook", relay.handle)
    relay_server = await aiohttp_server(relay_app)
    harness = await start_sandbox(
        aiohttp_server, sandbox_config(str(relay_server.make_url("/hook")))
    )
    port = free_port()
    settings = shop_settings(tmp_path, port, harness.url)
    relay.target = f"{settings.public_url}/webhooks/stripe"
    store = await Store.open(settings.db_path)
    outbox = SandboxOutbox()
    provider = stripe_checkouts(harness.url)
    async with aiohttp.ClientSession() as http:
        relay.http = http
        clock = FakeClock(time.time())  # real time, moved on only when a test says so
        app = build_app(
            settings, store, webhooks, checkouts=provider, messenger=outbox, clock=clock
        )
        server = await aiohttp_server(app, port=port)

        async def new_browser() -> Browser:
            return Browser(await aiohttp_client(server))

        yield Shop(settings, store, harness, relay, outbox, new_browser, clock)
        relay.gate.set()
        await server.close()
    await provider.close()
    await harness.close()
    await store.close()
    assert harness.schema_failures == []
