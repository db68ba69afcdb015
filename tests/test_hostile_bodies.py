"""A real `hero-onboarding server` against hostile request bodies (issue 14).

Compressed bodies are refused before anything inflates them, every body limit holds on the
bytes actually sent (chunked too), and a flood of unsigned webhooks is counted, not stored.
"""

from __future__ import annotations

import asyncio
import re
import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import apsw
import psutil
import pytest

from tests.conftest import SIGNING_SECRET
from tests.hostile_kit import RawAnswer, gzip_bomb, raw_post
from tests.processes import ServerProcess, free_port, start_server
from tests.sandbox_kit import API_KEY
from tests.stripe_events import body_of, event, new_id, sign
from tests.test_checkout_process import logged_in_remote_buyer
from tests.waiting import wait_until_async

ENV = {
    "STRIPE_WEBHOOK_SIGNING_KEY": SIGNING_SECRET,
    "STRIPE_SANDBOX_SECRET_KEY": API_KEY,
    "HERO_ONBOARDING_MODE": "sandbox",
    "HERO_ONBOARDING_PROVIDER": "stub",
}
BOMB_PATHS = ("/webhooks/stripe", "/health", "/payment/intent", "/no/such/page")
HELD_BACK_SQL = (
    "SELECT COUNT(*) FROM webhook_deliveries WHERE verified = 0 AND detail LIKE '%more refused%'"
)
UNSIGNED = {"Stripe-Signature": "t=1,v1=00", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    gzip_bomb()  # built once, before any clock in a test starts
    process = start_server(tmp_path_factory.mktemp("hostile") / "data", port=free_port(), env=ENV)
    yield process
    process.process.send_signal(signal.SIGTERM)
    assert process.process.wait(timeout=15) == 0, process.log()


def db_path(server: ServerProcess) -> Path:
    return server.log_path.parent / "data" / "onboarding.db"


def rows(server: ServerProcess, sql: str) -> int:
    conn = apsw.Connection(str(db_path(server)), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        conn.set_busy_timeout(5000)
        return conn.execute(sql).get
    finally:
        conn.close()


def closed_promptly(answer: RawAnswer) -> bool:
    """The server closed the connection soon after answering, not after reading it all."""
    return answer.closed_s is not None and answer.closed_s < 2.0


def cpu_seconds(server: ServerProcess) -> float:
    times = psutil.Process(server.process.pid).cpu_times()
    return times.user + times.system


async def metric(http: aiohttp.ClientSession, server: ServerProcess, name: str) -> float:
    async with http.get(server.url + "/metrics") as resp:
        text = await resp.text()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def signed_webhook(http: aiohttp.ClientSession, server: ServerProcess) -> float:
    """One real, signed delivery (an event type we ignore); its latency in seconds."""
    body = body_of(event("customer.created", {"id": new_id("cus"), "object": "customer"}))
    started = time.monotonic()
    async with http.post(
        server.url + "/webhooks/stripe",
        data=body.encode(),
        headers={
            "Stripe-Signature": sign(body, SIGNING_SECRET),
            "Content-Type": "application/json",
        },
    ) as resp:
        assert resp.status == 200, await resp.text()
    return time.monotonic() - started


async def health_latency(http: aiohttp.ClientSession, server: ServerProcess) -> float:
    started = time.monotonic()
    async with http.get(server.url + "/health") as resp:
        assert resp.status == 200
    return time.monotonic() - started


@pytest.mark.parametrize("path", BOMB_PATHS)
async def test_a_gzip_bomb_is_refused_unread_on_any_path(server: ServerProcess, path: str) -> None:
    cpu_before = cpu_seconds(server)
    answer = await raw_post(
        server.port,
        path,
        gzip_bomb(),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json", **UNSIGNED},
    )
    assert answer.status == 415, answer
    assert b"Content-Encoding is not accepted" in answer.body, answer.body
    if path.startswith("/webhooks/"):
        assert answer.body.count(b"\n") == 0, answer.body  # one line of JSON
    assert answer.answered_s < 1.0
    # The server closes the connection rather than reading (and inflating) the rest.
    assert closed_promptly(answer), answer
    async with aiohttp.ClientSession() as http:
        assert await health_latency(http, server) < 0.5
    assert cpu_seconds(server) - cpu_before < 0.5  # inflating 1 GiB takes ~3 s of CPU


async def test_bombs_in_a_loop_leave_health_and_signed_webhooks_fast(server: ServerProcess) -> None:
    done = asyncio.Event()
    refused = 0

    async def bomber(path: str) -> None:
        nonlocal refused
        while not done.is_set():
            answer = await raw_post(
                server.port, path, gzip_bomb(), headers={"Content-Encoding": "gzip"}
            )
            assert answer.status == 415
            refused += 1

    bombers = [asyncio.create_task(bomber(path)) for path in BOMB_PATHS]
    try:
        await wait_until_async(
            lambda: asyncio.sleep(0, refused >= len(BOMB_PATHS)),
            timeout=10,
            what="every bomber was refused once",
        )
        async with aiohttp.ClientSession() as http:
            health = [await health_latency(http, server) for _ in range(20)]
            webhooks = [await signed_webhook(http, server) for _ in range(5)]
    finally:
        done.set()
        await asyncio.gather(*bombers)
    assert max(health) < 0.5, health
    assert max(webhooks) < 1.0, webhooks
    assert statistics.median(health) < 0.1, health


async def test_a_chunked_form_over_the_limit_is_413_and_opens_no_checkout(
    server: ServerProcess,
) -> None:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        buyer = await logged_in_remote_buyer(http, server.url)
    before = rows(server, "SELECT COUNT(*) FROM checkout_sessions")
    form = f"csrf_token={buyer.csrf}&custom_amount=&pad=".encode() + b"x" * (900 * 1024)
    answer = await raw_post(
        server.port,
        "/payment/intent?amount=1000",
        form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": "; ".join(f"{c.key}={c.value}" for c in jar),
        },
        chunked=True,
    )
    assert answer.status == 413, answer
    assert closed_promptly(answer), answer
    assert rows(server, "SELECT COUNT(*) FROM checkout_sessions") == before


@pytest.mark.slow  # several seconds even alone
async def test_the_same_form_within_the_limit_opens_a_checkout(server: ServerProcess) -> None:
    """The control for the test above: the raw chunked request itself is a working form."""
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        buyer = await logged_in_remote_buyer(http, server.url)
    before = rows(server, "SELECT COUNT(*) FROM checkout_sessions")
    answer = await raw_post(
        server.port,
        "/payment/intent?amount=1000",
        f"csrf_token={buyer.csrf}&custom_amount=&pad=".encode() + b"x" * 8000,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": "; ".join(f"{c.key}={c.value}" for c in jar),
        },
        chunked=True,
    )
    assert answer.status == 303, answer
    assert rows(server, "SELECT COUNT(*) FROM checkout_sessions") == before + 1


async def test_a_chunked_webhook_over_the_limit_is_413_and_closed(server: ServerProcess) -> None:
    answer = await raw_post(
        server.port, "/webhooks/stripe", b"x" * (3 << 20), headers=UNSIGNED, chunked=True
    )
    assert answer.status == 413, answer
    assert b"larger than 1048576 bytes" in answer.body
    assert closed_promptly(answer), answer


async def test_an_unsigned_flood_is_counted_but_only_sampled_into_the_database(
    server: ServerProcess,
) -> None:
    count_sql = "SELECT COUNT(*) FROM webhook_deliveries WHERE verified = 0"
    name = 'hero_onboarding_webhook_unverified_total{reason="signature"}'
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=20)) as http:
        counted_before = await metric(http, server, name)
        stored_before = rows(server, count_sql)
        started = time.monotonic()

        async def post(_: int) -> int:
            async with http.post(
                server.url + "/webhooks/stripe", data=b'{"id": "evt_x"}', headers=UNSIGNED
            ) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(post(i) for i in range(2000)))
        elapsed = time.monotonic() - started
        assert set(statuses) == {401}
        assert await metric(http, server, name) - counted_before == 2000
        stored = rows(server, count_sql) - stored_before
        # At most one row per second per provider (the first of each second).
        assert stored <= int(elapsed) + 2, (stored, elapsed)
        flood_warnings = warnings_in(server)
        assert len(flood_warnings) <= int(elapsed) + 2, flood_warnings

        async def next_sample_counts_the_flood() -> bool:
            await post(0)
            return rows(server, HELD_BACK_SQL) > 0 and bool(warnings_in(server, "more refused"))

        # The next stored one says how many were not: a poll, one post each, for a second or so.
        await wait_until_async(
            next_sample_counts_the_flood, timeout=5, what="a stored sample counts the flood"
        )


def warnings_in(server: ServerProcess, also: str = "") -> list[str]:
    return [
        line
        for line in server.log().splitlines()
        if "unverified webhook deliveries" in line and also in line
    ]


async def test_verified_but_invalid_payloads_are_each_recorded(server: ServerProcess) -> None:
    count_sql = (
        "SELECT COUNT(*) FROM webhook_deliveries WHERE verified = 1 AND outcome = 'rejected'"
    )
    before = rows(server, count_sql)
    async with aiohttp.ClientSession() as http:
        for n in range(30):
            body = f'{{"object": "list", "n": {n}}}'
            async with http.post(
                server.url + "/webhooks/stripe",
                data=body.encode(),
                headers={"Stripe-Signature": sign(body, SIGNING_SECRET)},
            ) as resp:
                assert resp.status == 400
    assert rows(server, count_sql) - before == 30
