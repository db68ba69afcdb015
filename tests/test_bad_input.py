"""Bad input proof (hypothesis): whatever arrives, never a 5xx, never a credit, never a traceback.

The public app and the admin JSON-RPC app run as real servers in a thread of their own (one
store on a real file), so each generated example is one real HTTP request.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hero_onboarding.admin.methods import AdminContext, build_registry
from hero_onboarding.admin.server import SERVICE
from hero_onboarding.config import load_settings
from hero_onboarding.mycelium.messages import SandboxOutbox
from hero_onboarding.payments.stripe_api import DISPUTE_EVENT_TYPES, REFUND_EVENT_TYPES
from hero_onboarding.payments.stripe_provider import StripeWebhooks
from hero_onboarding.primitives import Secret
from hero_onboarding.rpc.server import create_rpc_app
from hero_onboarding.store import Store, checkouts, ledger
from tests.conftest import SIGNING_SECRET, build_app
from tests.processes import free_port
from tests.seeding import checkout
from tests.shop_kit import ADDRESS, CODE
from tests.stripe_events import (
    body_of,
    charge_refunded,
    checkout_event,
    dispute_event,
    new_id,
    refund_event,
    sign,
)

EXAMPLES = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Live:
    public: str
    admin: str
    opener: urllib.request.OpenerDirector  # a logged-in browser's cookie jar
    csrf: str
    db_path: Path
    sid: str  # the logged-in user's
    credits: int = 0  # purchases that well-formed, signed, paid events were entitled to


def _serve(db_dir: Path, ready: threading.Event, box: dict[str, Any], stop: threading.Event):
    async def main() -> None:
        config = load_settings(
            {"HOME": str(db_dir)}, {"data_dir": str(db_dir / "data"), "mode": "sandbox"}
        )
        store = await Store.open(config.db_path)
        outbox = SandboxOutbox()
        webhooks = StripeWebhooks([Secret(SIGNING_SECRET)])
        runners = []
        for name, app in (
            ("public", build_app(config, store, webhooks, messenger=outbox)),
            ("admin", create_rpc_app(build_registry(AdminContext(config, store, None)), SERVICE)),
        ):
            runner = web.AppRunner(app)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            runners.append(runner)
            box[name] = f"http://127.0.0.1:{port}"
        box["outbox"], box["db_path"] = outbox, config.db_path
        ready.set()
        await asyncio.to_thread(stop.wait)
        for runner in runners:
            await runner.cleanup()
        await store.close()

    asyncio.run(main())


def request(
    opener: urllib.request.OpenerDirector,
    url: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    """(status, body, Location) of one request; redirects are not followed."""
    method = "POST" if data is not None else "GET"
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with opener.open(req, timeout=10) as response:
            body = response.read().decode(errors="replace")
            return response.status, body, response.headers.get("Location", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace"), exc.headers.get("Location", "")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    box: dict[str, Any] = {}
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=_serve, args=(tmp_path_factory.mktemp("bad"), ready, box, stop), daemon=True
    )
    thread.start()
    assert ready.wait(20)
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    public = box["public"]
    _, page, _ = request(opener, public + "/")
    token = CSRF.search(page).group(1)  # type: ignore[union-attr]
    status, _, location = request(
        opener, public + "/login", _form(csrf_token=token, address=ADDRESS)
    )
    assert status == 303, status
    challenge = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["challenge"][0]
    code = CODE.search(box["outbox"].messages(ADDRESS)[0].text).group(1)  # type: ignore[union-attr]
    verified = _form(csrf_token=token, challenge=challenge, code=code)
    assert request(opener, public + "/login/verify", verified)[0] == 303
    _, page, _ = request(opener, public + "/")
    csrf = CSRF.search(page).group(1)  # type: ignore[union-attr]
    sid = json.loads(request(opener, public + "/account")[1])["sid"]
    yield Live(public, box["admin"], opener, csrf, box["db_path"], sid)
    stop.set()
    thread.join(20)


def _form(**fields: str) -> bytes:
    return urllib.parse.urlencode(fields).encode()


def assert_answered_well(status: int, body: str) -> None:
    assert status < 500, (status, body[:500])
    assert "Traceback" not in body
    assert 'File "' not in body


def ledger_rows(live: Live) -> list[tuple[str, str, int, str]]:
    conn = apsw.Connection(str(live.db_path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert ledger.verify_ledger(conn) == []
        rows: list[tuple[Any, ...]] = conn.execute(
            "SELECT external_ref, sid, amount, currency FROM payment_events ORDER BY id"
        ).fetchall()
        return rows
    finally:
        conn.close()


def open_checkout_for(live: Live, session_id: str, amount: int) -> None:
    """The row the service writes when it opens a checkout (only those are ever credited)."""
    conn = apsw.Connection(str(live.db_path))
    try:
        conn.set_busy_timeout(5000)
        checkouts.insert(conn, checkout(live.sid, session_id, amount))
    finally:
        conn.close()


def deliver_signed(live: Live, event: dict[str, Any]) -> tuple[int, str]:
    body = body_of(event)
    headers = {"Stripe-Signature": sign(body, SIGNING_SECRET), "Content-Type": "application/json"}
    status, answer, _ = request(
        live.opener, live.public + "/webhooks/stripe", body.encode(), headers
    )
    return status, answer


def no_credit(live: Live) -> None:
    """Nothing credited beyond what well-formed signed payments were entitled to."""
    assert len(ledger_rows(live)) == live.credits


# --- webhooks ---


@EXAMPLES
@given(body=st.binary(max_size=2048), signature=st.text(max_size=300))
def test_random_webhooks_are_refused_cleanly(live: Live, body: bytes, signature: str) -> None:
    headers = {"Content-Type": "application/json"}
    if signature.isascii() and "\n" not in signature and "\r" not in signature:
        headers["Stripe-Signature"] = signature
    status, answer, _ = request(live.opener, live.public + "/webhooks/stripe", body, headers)
    assert status in (400, 401, 413), (status, answer)
    assert_answered_well(status, answer)
    no_credit(live)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.slow  # several seconds even alone
@EXAMPLES
@given(data=st.data())
def test_signed_but_mangled_events_credit_only_what_a_paid_session_says(
    live: Live, data: st.DataObject
) -> None:
    """Signed with the right secret (as if it leaked) and for a real user, with one field
    replaced by random JSON: 200 or 400, never 5xx, and a credit only for what DESIGN.md allows
    (a completed, paid session), of exactly its amount_total, to its user."""
    amount = 1000
    event = checkout_event(
        "checkout.session.completed", sid=live.sid, amount=amount, payment_intent=new_id("pi")
    )
    open_checkout_for(live, event["data"]["object"]["id"], amount)
    path = data.draw(st.sampled_from([(), ("data",), ("data", "object")]))
    target: Any = event
    for key in path:
        target = target[key]
    key = data.draw(st.sampled_from(sorted(target)))
    target[key] = data.draw(JSON)
    before = ledger_rows(live)
    status, answer = deliver_signed(live, event)
    assert status in (200, 400), (status, answer)
    assert_answered_well(status, answer)
    new_rows = ledger_rows(live)[len(before) :]
    assert len(new_rows) <= 1
    if new_rows:
        session = event["data"]["object"]
        assert event["type"] == "checkout.session.completed"
        assert session["payment_status"] == "paid"
        [(_, sid, credited, currency)] = new_rows
        assert (sid, credited, currency) == (live.sid, session["amount_total"], "usd")
        assert credited == amount  # what the checkout was opened for, nothing else
        live.credits += 1


STATUS_WORDS = ("succeeded", "pending", "failed", "canceled", "needs_response", "lost", "won",
                "warning_closed")  # fmt: skip


def _reversal_event(kind: str, pi: str, amount: int, status: str) -> dict[str, Any]:
    if kind == "charge.refunded":
        return charge_refunded(payment_intent=pi, amount=1000, amount_refunded=amount)
    if kind.startswith("charge.dispute."):
        return dispute_event(kind, payment_intent=pi, amount=amount, status=status)
    return refund_event(kind, payment_intent=pi, amount=amount, status=status)


@pytest.mark.slow  # several seconds even alone
@EXAMPLES
@given(data=st.data())
def test_signed_but_mangled_refunds_and_disputes_take_at_most_what_was_paid(
    live: Live, data: st.DataObject
) -> None:
    """A paid purchase of ours, then a refund or dispute event about it with one field
    replaced by random JSON: 200 or 400, never 5xx, and whatever it moves stays on that
    purchase's user and within what the purchase credited."""
    paid = 1000
    purchase = checkout_event(
        "checkout.session.completed", sid=live.sid, amount=paid, payment_intent=new_id("pi")
    )
    session_id, pi = purchase["data"]["object"]["id"], purchase["data"]["object"]["payment_intent"]
    open_checkout_for(live, session_id, paid)
    assert deliver_signed(live, purchase)[0] == 200
    live.credits += 1

    kind = data.draw(st.sampled_from([*REFUND_EVENT_TYPES, *DISPUTE_EVENT_TYPES]))
    status_word = data.draw(st.sampled_from(STATUS_WORDS))
    event = _reversal_event(kind, pi, data.draw(st.integers(1, paid)), status_word)
    path = data.draw(st.sampled_from([(), ("data",), ("data", "object")]))
    target: Any = event
    for key in path:
        target = target[key]
    target[data.draw(st.sampled_from(sorted(target)))] = data.draw(JSON)
    before = ledger_rows(live)
    status, answer = deliver_signed(live, event)
    assert status in (200, 400), (status, answer)
    assert_answered_well(status, answer)
    new_rows = ledger_rows(live)[len(before) :]
    assert all(sid == live.sid and ref.startswith(f"{pi}:") for ref, sid, _, _ in new_rows)
    held_back = -sum(amount for _, _, amount, _ in new_rows)
    assert 0 <= held_back <= paid, new_rows
    live.credits += len(new_rows)


# --- pages ---


@EXAMPLES
@given(address=st.text(max_size=80), code=st.text(max_size=40), challenge=st.text(max_size=40))
def test_random_login_forms_get_pages_not_errors(
    live: Live, address: str, code: str, challenge: str
) -> None:
    for path, fields in (
        ("/login", {"address": address}),
        ("/login/verify", {"challenge": challenge, "code": code}),
        ("/login/verify", {"challenge": challenge, "proof": code}),
    ):
        status, answer, _ = request(
            live.opener, live.public + path, _form(csrf_token=live.csrf, **fields)
        )
        assert status in (200, 303, 400, 410, 429, 502, 503), (path, status)
        assert_answered_well(status, answer)
    no_credit(live)


@EXAMPLES
@given(query=st.text(max_size=40), custom=st.text(max_size=40), session=st.text(max_size=80))
def test_random_payment_params_get_pages_not_errors(
    live: Live, query: str, custom: str, session: str
) -> None:
    url = live.public + "/payment/intent?" + urllib.parse.urlencode({"amount": query})
    status, answer, _ = request(live.opener, url, _form(csrf_token=live.csrf, custom_amount=custom))
    assert status in (303, 400, 429), (status, answer[:300])
    assert_answered_well(status, answer)
    url = live.public + "/payment/return?" + urllib.parse.urlencode({"session_id": session})
    status, answer, _ = request(live.opener, url)
    assert status == 404
    assert_answered_well(status, answer)
    no_credit(live)


# --- the admin daemon's JSON-RPC ---


METHODS = st.sampled_from(
    ["info", "user_get", "user_list", "billing_get", "payment_list", "checkout_list",
     "delivery_list", "dispute_list", "billing_adjust", "ledger_verify", "reconcile",
     "rpc.discover"]
) | st.text(max_size=30)  # fmt: skip


@EXAMPLES
@given(payload=JSON, raw=st.binary(max_size=200), method=METHODS, params=JSON)
def test_random_json_rpc_gets_json_rpc_answers(
    live: Live, payload: Any, raw: bytes, method: str, params: Any
) -> None:
    call = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    for body in (json.dumps(payload).encode(), raw, json.dumps(call).encode()):
        status, answer, _ = request(
            live.opener, live.admin + "/rpc", body, {"Content-Type": "application/json"}
        )
        assert status in (200, 204), (status, answer[:300])
        assert_answered_well(status, answer)
        if status == 200:
            answered = json.loads(answer)
            entries = answered if isinstance(answered, list) else [answered]
            assert all(entry.get("jsonrpc") == "2.0" for entry in entries)
            internal = [e for e in entries if (e.get("error") or {}).get("code") == -32603]
            assert internal == [], internal
    no_credit(live)
