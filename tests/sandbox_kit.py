"""The sandbox as tests meet it: a real server, a recording webhook endpoint, a paying buyer.

Every /v1 response the sandbox sends in a test passes through `check_object`, and so does every
webhook it delivers: a test that talks to the sandbox also proves its objects match Stripe's
schemas, and `Harness.schema_failures` is asserted empty when the fixture ends.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
import stripe
from aiohttp import web
from stripe.params.checkout import SessionCreateParams, SessionCreateParamsLineItem

from hero_onboarding.sandbox.engine import Sandbox
from hero_onboarding.sandbox.keys import POKE, SANDBOX
from tests.stripe_schema import check_object
from tests.waiting import wait_until_async

API_KEY = "sk_test_sandbox_" + "c3" * 12
PAID_CARD = "4242 4242 4242 4242"
LINE_ITEM: SessionCreateParamsLineItem = {
    "price_data": {
        "currency": "usd",
        "unit_amount": 1000,
        "product_data": {"name": "Hero credits"},
    },
    "quantity": 1,
}
# Responses whose bodies are Stripe objects: the API, and the controls that answer one.
CHECKED_PATHS = ("/v1/", "/_sandbox/refunds", "/_sandbox/disputes")
SUCCESS_URL = "https://shop.example/payment/return?session_id={CHECKOUT_SESSION_ID}"


def session_params(**overrides: Any) -> SessionCreateParams:
    """A valid session's params, with `overrides` on top. The overrides are not type-checked:
    tests pass unknown or wrong ones on purpose, to see the sandbox's errors."""
    params: SessionCreateParams = {
        "mode": "payment",
        "line_items": [LINE_ITEM],
        "success_url": SUCCESS_URL,
        "cancel_url": "https://shop.example/payment/cancel",
        "client_reference_id": "sid-1",
        "metadata": {"sid": "sid-1", "address": "4a1::1"},
        "payment_intent_data": {"metadata": {"sid": "sid-1"}},
    }
    return cast("SessionCreateParams", {**params, **overrides})


@dataclass
class Received:
    headers: dict[str, str]
    body: str

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook endpoint: records every delivery, answers `script` statuses first, then 200."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    schema_failures: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.received.append(Received(dict(request.headers), body))
        try:
            check_object(json.loads(body), "webhook payload")
        except AssertionError as exc:
            self.schema_failures.append(str(exc))
        status = self.script.pop(0) if self.script else 200
        return web.Response(status=status, text="ok" if status < 300 else "nope")

    def of_type(self, event_type: str) -> list[Received]:
        return [r for r in self.received if r.event["type"] == event_type]

    def types(self) -> list[str]:
        return [r.event["type"] for r in self.received]


@dataclass
class FakeClock:
    """The sandbox's clock in a test: time passes when the test says so."""

    now: float = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class PageAnswer:
    status: int
    location: str | None
    html: str


@dataclass
class Harness:
    """A running sandbox, a plain HTTP client, and the official SDK (async) pointed at it."""

    url: str
    app: web.Application
    http: aiohttp.ClientSession
    sdk: stripe.StripeClient
    sdk_http: stripe.AIOHTTPClient
    schema_failures: list[str] = field(default_factory=list)

    @property
    def engine(self) -> Sandbox:
        return self.app[SANDBOX]

    def wake_clock(self) -> None:
        """Have the sandbox's clock task look at what is due now (after FakeClock.advance)."""
        self.app[POKE]()

    async def close(self) -> None:
        await self.http.close()
        await self.sdk_http.close_async()

    async def new_session(self, **overrides: Any) -> stripe.checkout.Session:
        return await self.sdk.v1.checkout.sessions.create_async(session_params(**overrides))

    def event_id(self, event_type: str) -> str:
        return next(e["id"] for e in self.engine.state.events.values() if e["type"] == event_type)

    def sync_client(self, api_key: str = API_KEY) -> stripe.StripeClient:
        """The SDK's sync client (requests): call it through `run_sync` from async tests."""
        return stripe.StripeClient(api_key, base_addresses={"api": self.url})

    async def submit(self, url: str, form: dict[str, str]) -> PageAnswer:
        """POST a form as a browser without JavaScript would, without following redirects."""
        async with self.http.post(url, data=form, allow_redirects=False) as response:
            return PageAnswer(
                response.status, response.headers.get("Location"), await response.text()
            )

    async def pay(self, session_url: str | None, **fields: str) -> PageAnswer:
        """Fill in the hosted page's form (a paying card unless `fields` say otherwise)."""
        assert session_url is not None, "the session has no hosted page"
        return await self.submit(session_url, card_form(**fields))

    async def pay_by_bank(
        self, session_url: str | None, account: str = "000123456789"
    ) -> PageAnswer:
        """Pay with a test US bank account: completes unpaid, settles later."""
        return await self.pay(
            session_url, method="us_bank_account", routing_number="110000000",
            account_number=account,
        )  # fmt: skip

    async def paid_intent(self, card: str = PAID_CARD, **overrides: Any) -> str:
        """A session paid on the hosted page with `card`; its PaymentIntent's id."""
        session = await self.new_session(**overrides)
        answer = await self.pay(session.url, card_number=card)
        assert answer.status == 303, answer.html
        paid = await self.sdk.v1.checkout.sessions.retrieve_async(session.id)
        assert isinstance(paid.payment_intent, str)
        return paid.payment_intent

    async def sdk_control(self, path: str, **params: Any) -> Any:
        """POST a /_sandbox control through the official SDK (its raw request), as a Stripe
        object: controls speak the API's auth, encoding and error shapes. Any: the object is
        whatever the control answers (a Refund, a Dispute), which the SDK types StripeObject."""
        response = await self.sdk.raw_request_async("post", path, **params)
        return self.sdk.deserialize(response, api_mode="V1")

    async def control(self, path: str, data: dict[str, str] | None = None) -> dict[str, Any]:
        async with self.http.post(
            self.url + path, data=data or {}, headers={"Authorization": f"Bearer {API_KEY}"}
        ) as response:
            body = await response.json()
            assert response.status == 200, body
            return body

    async def deliveries(self, **query: str) -> list[dict[str, Any]]:
        async with self.http.get(
            self.url + "/_sandbox/deliveries",
            params=query,
            headers={"Authorization": f"Bearer {API_KEY}"},
        ) as response:
            body = await response.json()
            assert response.status == 200, body
            return body["data"]

    async def settled_deliveries(self, count: int) -> list[dict[str, Any]]:
        """Wait until `count` deliveries exist and none is pending; return them oldest first."""

        async def settled() -> bool:
            found = await self.deliveries()
            return len(found) >= count and all(d["status"] != "pending" for d in found)

        await wait_until_async(settled, timeout=10, what=f"{count} deliveries settle")
        return list(reversed(await self.deliveries()))


def card_form(**fields: str) -> dict[str, str]:
    """The hosted page's form as a buyer fills it in (a paying card unless `fields` say not)."""
    return {
        "method": "card",
        "email": "buyer@example.com",
        "card_number": PAID_CARD,
        "card_expiry": "12 / 34",
        "card_cvc": "123",
        "name": "Ada Buyer",
        **fields,
    }


def schema_check_hook(failures: list[str]):
    """An on_response_prepare signal validating every JSON body the sandbox sends under /v1."""

    async def check(request: web.Request, response: web.StreamResponse) -> None:
        if not request.path.startswith(CHECKED_PATHS) or not isinstance(response, web.Response):
            return
        body = response.body
        if response.content_type != "application/json" or body is None:
            return
        assert isinstance(body, (bytes, bytearray)), "the sandbox's JSON bodies are bytes"
        try:
            check_object(json.loads(body), f"{request.method} {request.path}")
        except AssertionError as exc:
            failures.append(str(exc))

    return check


async def wait_for_types(receiver: Receiver, *types: str, timeout: float = 10) -> None:
    async def arrived() -> bool:
        return all(receiver.of_type(t) for t in types)

    await wait_until_async(arrived, timeout=timeout, what=f"deliveries of {types}")


def run_sync(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking SDK call off the loop that serves the sandbox."""
    return asyncio.to_thread(function, *args, **kwargs)
