"""The real processes: `hero-onboarding server` sells credits through `hero-onboarding sandbox`.

What the in-process tests cannot show: the CLI wires the provider from flags and environment,
and a buyer with nothing but HTTP and cookies gets from login to a credited balance.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import SIGNING_SECRET
from tests.login_kit import Browser
from tests.processes import ServerProcess, free_port, start_daemon, start_server
from tests.sandbox_kit import API_KEY, card_form
from tests.shop_kit import ADDRESS, CODE
from tests.waiting import wait_until_async

pytestmark = pytest.mark.process  # every test here starts real processes

ENV = {"STRIPE_WEBHOOK_SIGNING_KEY": SIGNING_SECRET, "STRIPE_SANDBOX_SECRET_KEY": API_KEY}
BALANCE = re.compile(r'data-testid="balance">([^<]+)<')


@dataclass
class Remote:
    """What login_kit.Browser needs of a client, for a server in another process."""

    base: str
    session: aiohttp.ClientSession

    def get(self, path: str, **options: Any):
        return self.session.get(self.base + path, **options)

    def post(self, path: str, **options: Any):
        return self.session.post(self.base + path, **options)


async def logged_in_remote_buyer(http: aiohttp.ClientSession, server_url: str) -> Browser:
    """A buyer of a server in another process, logged in through the sandbox outbox page."""
    buyer = Browser(Remote(server_url, http))  # type: ignore[arg-type]
    await buyer.get("/")
    asked = await buyer.ask_for_code(ADDRESS)
    outbox = await buyer.get(f"/sandbox/outbox?address={ADDRESS}")
    code = CODE.search(outbox.html)
    assert code is not None, outbox.html
    assert (await buyer.answer(asked.challenge_id, code=code.group(1))).status == 303
    await buyer.get("/")
    return buyer


@dataclass
class Service:
    server: ServerProcess
    sandbox: ServerProcess


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    server_port, sandbox_port = free_port(), free_port()
    sandbox = start_daemon(
        ["sandbox", "--port", str(sandbox_port),
         "--webhook", f"http://127.0.0.1:{server_port}/webhooks/stripe"],
        port=sandbox_port, ready_path="/health", log_dir=tmp_path, env=ENV,
    )  # fmt: skip
    try:
        server = start_server(
            tmp_path / "data",
            port=server_port,
            env={
                **ENV,
                "HERO_ONBOARDING_MODE": "sandbox",
                "HERO_ONBOARDING_STRIPE_API_BASE": sandbox.url,
            },
        )
    except BaseException:
        sandbox.process.kill()
        raise
    yield Service(server, sandbox)
    for process in (server, sandbox):
        process.process.send_signal(signal.SIGTERM)
        assert process.process.wait(timeout=10) == 0


async def test_a_buyer_goes_from_login_to_credited_balance(service: Service) -> None:
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for a bare IP host, as a browser keeps them
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        buyer = await logged_in_remote_buyer(http, service.server.url)

        started = await buyer.post("/payment/intent?amount=1000", {})
        assert started.status == 303
        assert started.location is not None
        assert started.location.startswith(service.sandbox.url + "/c/pay/cs_test_")
        async with http.post(started.location, data=card_form(), allow_redirects=False) as paid:
            assert paid.status == 303
            back = paid.headers["Location"]
        assert back.startswith(service.server.url + "/payment/return?session_id=cs_test_")

        async def credited() -> bool:
            page = await buyer.get(back.removeprefix(service.server.url))
            found = BALANCE.search(page.html)
            return found is not None and found.group(1) == "10.00 USD"

        await wait_until_async(credited, timeout=10, what="the return page shows 10.00 USD")
        home = await buyer.get("/")
        found = BALANCE.search(home.html)
        assert found is not None
        assert found.group(1) == "10.00 USD"

    for process in (service.server, service.sandbox):
        log = process.log()
        assert API_KEY not in log
        assert SIGNING_SECRET not in log
        assert "Traceback" not in log
    assert "checkout cs_test_" in service.server.log()
