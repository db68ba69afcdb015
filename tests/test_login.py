"""Logging in with a Mycelium address: message codes through a (fake) node, key proofs, sessions."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import AsyncIterator
from functools import partial

import aiohttp
import apsw
import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from hero_onboarding.config import load_settings
from hero_onboarding.daemon.auth import CSRF_COOKIE, SESSION_COOKIE
from hero_onboarding.daemon.login import TOPIC
from hero_onboarding.mycelium.address import address_of, parse_address
from hero_onboarding.mycelium.messages import MyceliumNode
from hero_onboarding.mycelium.proof import make_proof, public_key_of
from hero_onboarding.store import Store, users
from hero_onboarding.store.migrations import migrate
from tests.conftest import build_app
from tests.fake_mycelium import FakeNode
from tests.login_kit import NONCE, SERVER_KEY, Browser
from tests.sandbox_kit import FakeClock

ADDRESS = "4a1:2b3c:4d5e:6f70:8192:a3b4:c5d6:e7f8"


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


@pytest.fixture
async def node_url(aiohttp_server, node: FakeNode) -> str:
    server = await aiohttp_server(node.app())
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def app_client(
    aiohttp_client, settings, store, webhooks, node_url: str, clock: FakeClock
) -> AsyncIterator[TestClient]:
    async with aiohttp.ClientSession() as http:
        app = build_app(
            settings, store, webhooks, messenger=MyceliumNode(node_url, http), clock=clock
        )
        yield await aiohttp_client(app)


@pytest.fixture
def browser(app_client: TestClient) -> Browser:
    return Browser(app_client)


async def log_in_with_code(browser: Browser, node: FakeNode, typed: str = ADDRESS) -> str:
    await browser.get("/")  # the page a person would post from, with its current token
    asked = await browser.ask_for_code(typed)
    assert asked.status == 303, asked.html
    done = await browser.answer(asked.challenge_id, code=node.last_code(parse_address(typed)))
    assert (done.status, done.location) == (303, "/"), done.html
    return asked.challenge_id


def rows(store: Store, sql: str, *args: object) -> list[tuple]:
    return store._reader.execute(sql, args).fetchall()  # type: ignore[attr-defined]


async def test_the_right_code_opens_a_session(browser: Browser, node: FakeNode, store: Store):
    asked = await browser.ask_for_code(ADDRESS)
    assert asked.status == 303
    assert asked.location.startswith("/login/verify?challenge=")
    [message] = node.received
    assert (message.address, message.topic) == (ADDRESS, TOPIC)

    page = await browser.get(asked.location)
    assert page.status == 200
    assert ADDRESS in page.html
    assert "hero_onboarding.login" in page.html

    done = await browser.answer(asked.challenge_id, code=node.last_code(ADDRESS).lower())
    assert (done.status, done.location) == (303, "/")
    home = await browser.get("/")
    assert "Logged in as" in home.html
    assert ADDRESS in home.html
    assert "0.00 USD" in home.html
    account = await browser.client.get("/account")
    sid = (await account.json())["sid"]
    assert (await account.json())["mycelium_address"] == ADDRESS

    user = await store.read(partial(users.get_by_address, address=ADDRESS))
    assert user is not None
    assert user.sid == sid
    token = browser.cookie(SESSION_COOKIE)
    assert token
    stored = rows(store, "SELECT token_hash FROM web_sessions")
    assert stored == [(hashlib.sha256(token.encode()).hexdigest(),)]
    assert rows(store, "SELECT COUNT(*) FROM web_sessions WHERE token_hash = ?", token) == [(0,)]
    code_hashes = rows(store, "SELECT code_hash FROM login_challenges")
    assert node.last_code(ADDRESS) not in str(code_hashes)


async def test_the_same_address_is_the_same_user_forever(
    app_client: TestClient, node: FakeNode, store: Store
) -> None:
    first, second = Browser(app_client), Browser(app_client)
    await log_in_with_code(first, node)
    first_sid = (await (await app_client.get("/account")).json())["sid"]
    app_client.session.cookie_jar.clear()
    await log_in_with_code(second, node, ADDRESS.upper().replace(":0", ":"))
    assert (await (await app_client.get("/account")).json())["sid"] == first_sid
    assert rows(store, "SELECT COUNT(*) FROM users") == [(1,)]
    assert rows(store, "SELECT COUNT(*) FROM billing") == [(1,)]


async def test_five_wrong_codes_kill_the_challenge(browser: Browser, node: FakeNode) -> None:
    asked = await browser.ask_for_code(ADDRESS)
    for left in (4, 3, 2, 1):
        wrong = await browser.answer(asked.challenge_id, code="AAAAA-AAAAA")
        assert wrong.status == 400
        assert f"{left} tr" in wrong.html
    last = await browser.answer(asked.challenge_id, code="AAAAA-AAAAA")
    assert last.status == 410
    assert "last try" in last.html
    right = await browser.answer(asked.challenge_id, code=node.last_code(ADDRESS))
    assert right.status == 410
    assert browser.cookie(SESSION_COOKIE) is None


async def test_wrong_tries_are_counted_strictly_even_all_at_once(
    browser: Browser, node: FakeNode, store: Store
) -> None:
    asked = await browser.ask_for_code(ADDRESS)
    answers = await asyncio.gather(
        *(browser.answer(asked.challenge_id, code=f"AAAAA-AAAA{i % 10}") for i in range(30))
    )
    assert sum(a.status == 400 for a in answers) == 4
    assert sum(a.status == 410 for a in answers) == 26
    assert rows(store, "SELECT attempts FROM login_challenges") == [(5,)]


async def test_an_expired_code_is_refused(
    browser: Browser, node: FakeNode, clock: FakeClock
) -> None:
    asked = await browser.ask_for_code(ADDRESS)
    clock.advance(600)
    late = await browser.answer(asked.challenge_id, code=node.last_code(ADDRESS))
    assert late.status == 410
    assert "expired" in late.html
    assert (await browser.get(asked.location)).status == 410


async def test_a_used_code_cannot_log_in_again(app_client: TestClient, node: FakeNode) -> None:
    first = Browser(app_client)
    challenge_id = await log_in_with_code(first, node)
    app_client.session.cookie_jar.clear()
    thief = Browser(app_client)
    again = await thief.answer(challenge_id, code=node.last_code(ADDRESS))
    assert again.status == 410
    assert "already used" in again.html
    assert thief.cookie(SESSION_COOKIE) is None


@pytest.mark.parametrize(
    ("answer_with", "status", "words"), [(None, 503, "unreachable"), (400, 502, "would not take")]
)
async def test_a_node_that_is_down_or_refuses_sends_nothing_and_records_nothing(
    aiohttp_client, settings, store, webhooks, node: FakeNode, node_url: str,
    answer_with: int | None, status: int, words: str,
) -> None:  # fmt: skip
    url = "http://127.0.0.1:9" if answer_with is None else node_url
    node.answer_with = answer_with
    async with aiohttp.ClientSession() as http:
        client = await aiohttp_client(
            build_app(settings, store, webhooks, messenger=MyceliumNode(url, http))
        )
        answer = await Browser(client).ask_for_code(ADDRESS)
    assert answer.status == status
    assert words in answer.html
    assert rows(store, "SELECT COUNT(*) FROM login_challenges") == [(0,)]


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        ("", "enter your Mycelium address"),
        ("not an address", "not an IPv6 address"),
        ("2001:db8::1", "not a Mycelium address"),
        ("<script>alert(1)</script>", "not an IPv6 address"),
    ],
)
async def test_bad_addresses_get_a_400_page_saying_why(
    browser: Browser, node: FakeNode, typed: str, words: str
) -> None:
    answer = await browser.ask_for_code(typed)
    assert answer.status == 400
    assert words in answer.html
    assert "<script>alert" not in answer.html
    assert node.received == []


async def test_codes_are_rate_limited_per_address_and_per_ip(
    aiohttp_client, tmp_path, store, webhooks, node: FakeNode, node_url: str
) -> None:
    settings = load_settings(
        {"HOME": str(tmp_path)},
        {"data_dir": str(tmp_path / "data"), "login_max_per_address": "2", "login_max_per_ip": "3"},
    )
    async with aiohttp.ClientSession() as http:
        client = await aiohttp_client(
            build_app(settings, store, webhooks, messenger=MyceliumNode(node_url, http))
        )
        browser = Browser(client)
        assert [(await browser.ask_for_code(ADDRESS)).status for _ in range(3)] == [303, 303, 429]
        other = "5ff::1"
        assert (await browser.ask_for_code(other)).status == 303
        limited = await browser.ask_for_code("5ff::2")
    assert limited.status == 429
    assert "Too many" in limited.html
    assert len(node.received) == 3


def user_key() -> tuple[bytes, str]:
    private_key = X25519PrivateKey.generate().private_bytes_raw()  # type: ignore[attr-defined]
    return private_key, address_of(public_key_of(private_key))


async def test_a_key_proof_logs_in_once(browser: Browser, node: FakeNode) -> None:
    private_key, address = user_key()
    asked = await browser.ask_for_code(address)
    page = await browser.get(asked.location)
    nonce, server_key = NONCE.search(page.html).group(1), SERVER_KEY.search(page.html).group(1)
    proof = make_proof(private_key, bytes.fromhex(server_key), nonce)

    done = await browser.answer(asked.challenge_id, proof=proof)
    assert (done.status, done.location) == (303, "/")
    assert (await browser.get("/")).html.count(address) == 1
    replayed = await browser.answer(asked.challenge_id, proof=proof)
    assert replayed.status == 410


async def test_key_proofs_that_do_not_hold_are_refused(browser: Browser) -> None:
    private_key, address = user_key()
    other_key, _ = user_key()
    asked = await browser.ask_for_code(address)
    page = await browser.get(asked.location)
    nonce, server_key = (
        NONCE.search(page.html).group(1),
        bytes.fromhex(SERVER_KEY.search(page.html).group(1)),
    )
    cases = [
        (make_proof(other_key, server_key, nonce), "belongs to another Mycelium address"),
        (make_proof(private_key, server_key, nonce)[:-2] + "00", "does not match"),
        (make_proof(private_key, server_key, "another-nonce"), "does not match"),
        ("garbage", "cannot be read"),
    ]
    for proof, words in cases:
        answer = await browser.answer(asked.challenge_id, proof=proof)
        assert answer.status == 400, proof
        assert words in answer.html
    assert browser.cookie(SESSION_COOKIE) is None


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/login", {"address": ADDRESS}),
        ("/login/verify", {"challenge": "x", "code": "AAAAA-AAAAA"}),
        ("/logout", {}),
    ],
)
async def test_forms_without_a_valid_csrf_token_are_403(
    browser: Browser, node: FakeNode, path: str, form: dict[str, str]
) -> None:
    missing = await browser.post(path, form, csrf=False)
    assert missing.status == 403
    await browser.get("/")
    forged = await browser.post(path, {**form, "csrf_token": "forged"}, csrf=False)
    assert forged.status == 403
    assert node.received == []


async def test_a_token_from_another_visitor_is_403(app_client: TestClient, node) -> None:
    mine = Browser(app_client)
    await mine.get("/")
    stolen = mine.csrf
    app_client.session.cookie_jar.clear()
    other = Browser(app_client)
    await other.get("/")
    answer = await other.post("/login", {"address": ADDRESS, "csrf_token": stolen}, csrf=False)
    assert answer.status == 403


async def test_logout_kills_the_session_server_side(
    app_client: TestClient, node: FakeNode, store: Store
) -> None:
    browser = Browser(app_client)
    await log_in_with_code(browser, node)
    token = browser.cookie(SESSION_COOKIE)
    await browser.get("/")
    out = await browser.post("/logout", {})
    assert (out.status, out.location) == (303, "/")
    assert rows(store, "SELECT COUNT(*) FROM web_sessions") == [(0,)]
    async with app_client.get(
        "/account", cookies={SESSION_COOKIE: token}, allow_redirects=False
    ) as replay:
        assert replay.status == 303  # the old cookie is worth nothing now


async def test_user_only_routes_send_strangers_to_log_in(app_client: TestClient) -> None:
    async with app_client.get("/account", allow_redirects=False) as response:
        assert (response.status, response.headers["Location"]) == (303, "/")


async def test_cookies_are_httponly_lax_and_secure_behind_https(
    aiohttp_client, tmp_path, store, webhooks
) -> None:
    settings = load_settings(
        {"HOME": str(tmp_path)},
        {"data_dir": str(tmp_path / "data"), "public_url": "https://pay.example"},
    )
    client = await aiohttp_client(build_app(settings, store, webhooks))
    async with client.get("/") as response:
        cookie = response.cookies[CSRF_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["secure"] is True


async def test_the_sandbox_outbox_carries_codes_and_exists_only_in_sandbox_mode(
    aiohttp_client, tmp_path, store, webhooks
) -> None:
    sandbox = load_settings(
        {"HOME": str(tmp_path)}, {"data_dir": str(tmp_path / "data"), "mode": "sandbox"}
    )
    client = await aiohttp_client(build_app(sandbox, store, webhooks))
    browser = Browser(client)
    asked = await browser.ask_for_code(ADDRESS)
    page = await browser.get(asked.location)
    assert "SANDBOX" in page.html
    assert "/sandbox/outbox?address=" in page.html
    outbox = await browser.get(f"/sandbox/outbox?address={ADDRESS}")
    assert outbox.status == 200
    code = outbox.html.split("login code is ")[1][:11]
    done = await browser.answer(asked.challenge_id, code=code)
    assert (done.status, done.location) == (303, "/")

    production = await aiohttp_client(
        build_app(dataclasses.replace(sandbox, mode="production"), store, webhooks)
    )
    async with production.get("/sandbox/outbox") as response:
        assert response.status == 404


def test_the_schema_refuses_a_malformed_challenge(tmp_path) -> None:
    """The CHECKs keep a malformed challenge out even from raw SQL."""
    conn = apsw.Connection(str(tmp_path / "x.db"))
    migrate(conn)
    with pytest.raises(apsw.ConstraintError):
        conn.execute(
            "INSERT INTO login_challenges (id, mycelium_address, code_hash, nonce, client_ip,"
            " attempts, created_at, expires_at) VALUES ('a', '4a1::1', 'h', 'n', 'ip', -1, 1, 2)"
        )


async def test_behind_a_proxy_the_forwarded_address_is_rate_limited(
    aiohttp_client, tmp_path, store, webhooks
) -> None:
    settings = load_settings(
        {"HOME": str(tmp_path)},
        {
            "data_dir": str(tmp_path / "data"),
            "client_ip_header": "X-Forwarded-For",
            "login_max_per_ip": "1",
        },
    )
    client = await aiohttp_client(build_app(settings, store, webhooks))
    browser = Browser(client)
    await browser.get("/")

    async def ask(address: str, forwarded: str) -> int:
        data = {"csrf_token": browser.csrf, "address": address}
        headers = {"X-Forwarded-For": forwarded}
        async with client.post("/login", data=data, headers=headers, allow_redirects=False) as r:
            return r.status

    assert await ask("4a1::1", "6.6.6.6, 10.0.0.1") == 303
    assert await ask("4a1::2", "7.7.7.7, 10.0.0.2") == 303  # another client behind the proxy
    assert await ask("4a1::3", "6.6.6.6, 10.0.0.2") == 429  # only the proxy's own entry counts
    assert rows(store, "SELECT DISTINCT client_ip FROM login_challenges ORDER BY 1") == [
        ("10.0.0.1",),
        ("10.0.0.2",),
    ]


async def test_a_new_login_replaces_the_browsers_old_session(
    browser: Browser, node: FakeNode, store: Store
) -> None:
    await log_in_with_code(browser, node)
    await log_in_with_code(browser, node)
    assert rows(store, "SELECT COUNT(*) FROM web_sessions") == [(1,)]
