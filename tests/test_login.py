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

from hero_onboarding.config import Mode, load_settings
from hero_onboarding.daemon.auth import CSRF_COOKIE, SESSION_COOKIE
from hero_onboarding.daemon.challenges import TOPIC, client_bucket
from hero_onboarding.daemon.keys import MESSENGER
from hero_onboarding.mycelium.address import address_of, parse_address
from hero_onboarding.mycelium.messages import MyceliumNode, SandboxOutbox
from hero_onboarding.mycelium.proof import make_proof, public_key_of
from hero_onboarding.store import Store, users
from hero_onboarding.store.migrations import migrate
from tests.conftest import build_app
from tests.fake_mycelium import FakeNode
from tests.login_kit import CHALLENGE_ID, NONCE, SERVER_KEY, Browser, shown
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
    settings, store, webhooks, node_url: str, clock: FakeClock, aiohttp_client
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


async def rows(store: Store, sql: str, *args: object) -> list[tuple]:
    return await store.read(lambda conn: conn.execute(sql, args).fetchall())


async def test_the_right_code_opens_a_session(browser: Browser, node: FakeNode, store: Store):
    asked = await browser.ask_for_code(ADDRESS)
    assert asked.status == 303
    assert asked.location is not None
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
    stored = await rows(store, "SELECT token_hash FROM web_sessions")
    assert stored == [(hashlib.sha256(token.encode()).hexdigest(),)]
    assert await rows(store, "SELECT COUNT(*) FROM web_sessions WHERE token_hash = ?", token) == [
        (0,)
    ]
    code_hashes = await rows(store, "SELECT code_hash FROM login_challenges")
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
    assert await rows(store, "SELECT COUNT(*) FROM users") == [(1,)]
    assert await rows(store, "SELECT COUNT(*) FROM billing") == [(1,)]


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
    assert await rows(store, "SELECT attempts FROM login_challenges") == [(5,)]


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
    ("answer_with", "status", "words"),
    [(None, 503, "could not reach our Mycelium node"), (400, 502, "would not take a message")],
)
async def test_when_the_node_fails_no_code_exists_but_the_key_proof_still_works(
    aiohttp_client, settings, store, webhooks, node: FakeNode, node_url: str,
    answer_with: int | None, status: int, words: str,
) -> None:  # fmt: skip
    url = "http://127.0.0.1:9" if answer_with is None else node_url
    node.answer_with = answer_with
    private_key, address = user_key()
    async with aiohttp.ClientSession() as http:
        client = await aiohttp_client(
            build_app(settings, store, webhooks, messenger=MyceliumNode(url, http))
        )
        browser = Browser(client)
        answer = await browser.ask_for_code(address)
        assert answer.status == status
        assert words in answer.html
        assert 'name="code"' not in answer.html  # no code form: there is no code
        assert await rows(store, "SELECT code_hash IS NULL FROM login_challenges") == [(1,)]
        assert await rows(store, "SELECT COUNT(*) FROM users") == [(0,)]
        challenge_id = shown(CHALLENGE_ID, answer.html)
        proof = proof_from_page(answer.html, private_key)
        done = await browser.answer(challenge_id, proof=proof)
    assert (done.status, done.location) == (303, "/")
    assert node.received == []


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


def limited_settings(tmp_path, **values: str):
    return load_settings({"HOME": str(tmp_path)}, {"data_dir": str(tmp_path / "data"), **values})


async def test_limits_hold_under_a_burst_of_concurrent_requests(
    aiohttp_client, tmp_path, store, webhooks
) -> None:
    settings = limited_settings(tmp_path, login_max_per_address="5", login_max_per_ip="20")
    outbox = SandboxOutbox()
    client = await aiohttp_client(build_app(settings, store, webhooks, messenger=outbox))
    browser = Browser(client)
    await browser.get("/")
    answers = await asyncio.gather(*(browser.ask_for_code(ADDRESS) for _ in range(40)))
    assert sum(a.status == 303 for a in answers) == 20
    assert sum(a.status == 429 for a in answers) == 20
    assert len(outbox.messages(ADDRESS)) == 5  # the address's code limit, not one more
    assert await rows(store, "SELECT COUNT(*) FROM login_challenges") == [(20,)]
    limited = next(a for a in answers if a.status == 429)
    assert "Too many logins" in limited.html


async def test_a_stranger_cannot_lock_an_owner_out(
    aiohttp_client, tmp_path, store, webhooks, clock: FakeClock
) -> None:
    """Codes to an address run out for everyone, but its owner can still prove with the key."""
    settings = limited_settings(tmp_path, login_max_per_address="2", client_ip_header="X-Real-IP")
    outbox = SandboxOutbox()
    client = await aiohttp_client(
        build_app(settings, store, webhooks, messenger=outbox, clock=clock)
    )
    private_key, address = user_key()
    stranger, owner = Browser(client), Browser(client)
    await stranger.get("/")
    for _ in range(3):
        data = {"csrf_token": stranger.csrf, "address": address}
        async with client.post(
            "/login", data=data, headers={"X-Real-IP": "6.6.6.6"}, allow_redirects=False
        ) as response:
            assert response.status == 303
    assert len(outbox.messages(address)) == 2

    asked = await owner.ask_for_code(address)
    assert asked.status == 303
    page = await owner.get(asked.location)
    assert "none was sent this time" in page.html
    assert 'name="code"' not in page.html
    done = await owner.answer(asked.challenge_id, proof=proof_from_page(page.html, private_key))
    assert (done.status, done.location) == (303, "/")


async def test_a_client_over_its_limit_is_told_when_to_come_back(
    aiohttp_client, tmp_path, store, webhooks, clock: FakeClock
) -> None:
    settings = limited_settings(tmp_path, login_max_per_ip="2")
    client = await aiohttp_client(build_app(settings, store, webhooks, clock=clock))
    browser = Browser(client)
    await browser.ask_for_code("4a1::1")
    clock.advance(1000)
    await browser.ask_for_code("4a1::2")
    limited = await browser.ask_for_code("4a1::3")
    assert limited.status == 429
    assert limited.headers["Retry-After"] == str(3600 - 1000)
    clock.advance(2600)
    assert (await browser.ask_for_code("4a1::4")).status == 303  # the first one aged out


def user_key() -> tuple[bytes, str]:
    private_key = X25519PrivateKey.generate().private_bytes_raw()
    return private_key, address_of(public_key_of(private_key))


def proof_from_page(html: str, private_key: bytes, nonce: str | None = None) -> str:
    """What login-proof prints for the challenge and server key a page shows."""
    shown_nonce = shown(NONCE, html)
    server_key = bytes.fromhex(shown(SERVER_KEY, html))
    return make_proof(private_key, server_key, nonce or shown_nonce)


async def test_a_key_proof_logs_in_once(browser: Browser, node: FakeNode) -> None:
    private_key, address = user_key()
    asked = await browser.ask_for_code(address)
    page = await browser.get(asked.location)
    assert f"{shown(NONCE, page.html)}".endswith("@127.0.0.1:8780")  # names the site
    proof = proof_from_page(page.html, private_key)

    done = await browser.answer(asked.challenge_id, proof=proof)
    assert (done.status, done.location) == (303, "/")
    assert (await browser.get("/")).html.count(address) == 1
    replayed = await browser.answer(asked.challenge_id, proof=proof)
    assert replayed.status == 410


async def test_key_proofs_that_do_not_hold_are_refused(browser: Browser) -> None:
    private_key, address = user_key()
    other_key, _ = user_key()
    asked = await browser.ask_for_code(address)
    page = (await browser.get(asked.location)).html
    good = proof_from_page(page, private_key)
    public_hex, mac_hex = good.split(":")
    flipped = bytearray(bytes.fromhex(public_hex))
    flipped[31] |= 0x80  # the same X25519 key, written another way: it names another address
    cases = [
        (proof_from_page(page, other_key), "belongs to another Mycelium address"),
        (good[:-2] + ("00" if not good.endswith("00") else "01"), "does not match"),
        (proof_from_page(page, private_key, nonce="another-nonce"), "does not match"),
        (f"{bytes(flipped).hex()}:{mac_hex}", "not in canonical form"),
    ]
    for proof, words in cases:
        answer = await browser.answer(asked.challenge_id, proof=proof)
        assert answer.status == 400, proof
        assert words in answer.html
    dead = await browser.answer(asked.challenge_id, proof="garbage")
    assert dead.status == 410  # the fifth wrong answer was the last
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
    assert token is not None
    await browser.get("/")
    out = await browser.post("/logout", {})
    assert (out.status, out.location) == (303, "/")
    assert await rows(store, "SELECT COUNT(*) FROM web_sessions") == [(0,)]
    async with app_client.get(
        "/account", cookies={SESSION_COOKIE: token}, allow_redirects=False
    ) as replay:
        assert replay.status == 303  # the old cookie is worth nothing now


async def test_user_only_routes_send_strangers_to_log_in(app_client: TestClient) -> None:
    async with app_client.get("/account", allow_redirects=False) as response:
        assert (response.status, response.headers["Location"]) == (303, "/")


async def test_cookies_are_httponly_lax_and_host_only_secure_behind_https(
    aiohttp_client, tmp_path, store, webhooks
) -> None:
    settings = limited_settings(tmp_path, public_url="HTTPS://pay.example")
    client = await aiohttp_client(build_app(settings, store, webhooks))
    async with client.get("/") as response:
        csrf = response.cookies["__Host-hero_csrf"]
    assert (csrf["httponly"], csrf["samesite"], csrf["secure"], csrf["path"]) == (
        True, "Lax", True, "/",
    )  # fmt: skip
    # The test server speaks plain http, so the jar keeps Secure cookies to itself: send it.
    sent = {"Cookie": f"__Host-hero_csrf={csrf.value}"}
    async with client.post(
        "/login",
        data={"csrf_token": csrf.value, "address": ADDRESS},
        headers=sent,
        allow_redirects=False,
    ) as response:
        challenge_id = response.headers["Location"].split("challenge=")[1]
    code = client.app[MESSENGER].messages(ADDRESS)[0].text.split("login code is ")[1][:11]
    async with client.post(
        "/login/verify",
        data={"csrf_token": csrf.value, "challenge": challenge_id, "code": code},
        headers=sent,
        allow_redirects=False,
    ) as response:
        assert response.status == 303
        session = response.cookies["__Host-hero_session"]
    assert (session["httponly"], session["samesite"], session["secure"]) == (True, "Lax", True)
    assert session["max-age"] == str(settings.session_ttl_s)


async def test_plain_http_cookies_have_no_prefix_and_no_secure(app_client: TestClient) -> None:
    async with app_client.get("/") as response:
        csrf = response.cookies[CSRF_COOKIE]
    assert csrf["secure"] == ""
    assert csrf["httponly"] is True


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
        build_app(dataclasses.replace(sandbox, mode=Mode.PRODUCTION), store, webhooks)
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
    assert await rows(store, "SELECT DISTINCT client_ip FROM login_challenges ORDER BY 1") == [
        ("10.0.0.1",),
        ("10.0.0.2",),
    ]


async def test_a_new_login_replaces_the_browsers_old_session(
    browser: Browser, node: FakeNode, store: Store
) -> None:
    await log_in_with_code(browser, node)
    await log_in_with_code(browser, node)
    assert await rows(store, "SELECT COUNT(*) FROM web_sessions") == [(1,)]


FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"address=4a1::1", {"Content-Type": f"{FORM}; charset=bogus"}, 400),
        (b"garbage", {"Content-Type": FORM, "Content-Encoding": "gzip"}, 415),
        (b"address=\xff\xfe", {"Content-Type": FORM}, 400),
        (b"--b\r\nnot a part", {"Content-Type": "multipart/form-data; boundary=b"}, 400),
        (b'{"address": "4a1::1"}', {"Content-Type": "application/json"}, 400),
        (b"address=" + b"4" * 20_000, {"Content-Type": FORM}, 413),
    ],
)
async def test_bodies_that_are_not_our_forms_get_a_page_not_a_traceback(
    app_client: TestClient, node: FakeNode, body: bytes, headers: dict[str, str], status: int
) -> None:
    async with app_client.post("/login", data=body, headers=headers) as response:
        html = await response.text()
    assert response.status == status
    assert "<h1>" in html
    assert "Traceback" not in html
    assert node.received == []


async def test_a_cross_site_post_is_refused_even_with_the_token(
    browser: Browser, node: FakeNode
) -> None:
    await browser.get("/")
    async with browser.client.post(
        "/login",
        data={"csrf_token": browser.csrf, "address": ADDRESS},
        headers={"Sec-Fetch-Site": "cross-site"},
    ) as response:
        assert response.status == 403
    assert node.received == []


async def test_a_forged_logout_leaves_the_session_alone(
    browser: Browser, node: FakeNode, store: Store
) -> None:
    await log_in_with_code(browser, node)
    forged = await browser.post("/logout", {"csrf_token": "forged"}, csrf=False)
    assert forged.status == 403
    assert await rows(store, "SELECT COUNT(*) FROM web_sessions") == [(1,)]
    assert (await browser.client.get("/account")).status == 200


async def test_a_database_that_cannot_answer_gives_a_503_page(
    app_client: TestClient, store: Store, node: FakeNode
) -> None:
    browser = Browser(app_client)
    await browser.get("/")
    await store.close()
    answer = await browser.ask_for_code(ADDRESS)
    assert answer.status == 503
    assert "nothing was changed" in answer.html
    assert node.received == []


@pytest.mark.parametrize(
    ("client", "bucket"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # the same line: one bucket
        ("unknown", "unknown"),
    ],
)
def test_clients_are_limited_per_ipv4_address_or_ipv6_line(client: str, bucket: str) -> None:
    assert client_bucket(client) == bucket


async def test_the_client_header_is_believed_only_from_trusted_proxies(
    aiohttp_client, tmp_path, store, webhooks
) -> None:
    settings = limited_settings(
        tmp_path,
        client_ip_header="X-Real-IP",
        trusted_proxies="10.9.0.0/16",  # the test client connects from 127.0.0.1: not trusted
        login_max_per_ip="1",
    )
    client = await aiohttp_client(build_app(settings, store, webhooks))
    browser = Browser(client)
    await browser.get("/")
    for n, status in ((1, 303), (2, 429)):
        async with client.post(
            "/login",
            data={"csrf_token": browser.csrf, "address": f"4a1::{n}"},
            headers={"X-Real-IP": f"6.6.6.{n}"},  # a different claimed address each time
            allow_redirects=False,
        ) as response:
            assert response.status == status
    assert await rows(store, "SELECT DISTINCT client_ip FROM login_challenges") == [("127.0.0.1",)]
