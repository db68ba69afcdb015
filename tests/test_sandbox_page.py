"""The hosted payment page: Stripe's test cards, 3-D Secure, bank payments, closed sessions.

The page is driven here as a browser without JavaScript drives it: GET it, POST its form.
"""

from __future__ import annotations

import re

import pytest
import stripe

from tests.sandbox_kit import Harness, Receiver, session_params, wait_for_types


async def new_session(client: stripe.StripeClient, **overrides: object) -> stripe.checkout.Session:
    return await client.v1.checkout.sessions.create_async(session_params(**overrides))


async def page_text(sandbox: Harness, url: str | None) -> tuple[int, str]:
    assert url is not None
    async with sandbox.http.get(url) as response:
        return response.status, await response.text()


async def test_the_page_shows_amount_product_and_a_form_with_labels(
    sandbox: Harness, stripe_client: stripe.StripeClient
) -> None:
    session = await new_session(stripe_client, customer_email="ada@example.com")
    status, html = await page_text(sandbox, session.url)
    assert status == 200
    assert "10.00 USD" in html
    assert "Hero credits" in html
    assert "SANDBOX" in html
    assert "<script" not in html
    for field in ("email", "card_number", "card_expiry", "card_cvc"):
        assert re.search(rf'<label for="{field}">', html), field
        assert f'id="{field}" name="{field}"' in html
    assert 'action="/c/pay/' in html
    assert 'method="post"' in html


async def test_paying_with_4242_completes_the_session_and_redirects(
    sandbox: Harness, stripe_client: stripe.StripeClient, receiver: Receiver
) -> None:
    session = await new_session(stripe_client)
    response = await sandbox.pay(session.url)
    assert response.status == 303
    assert response.location == (f"https://shop.example/payment/return?session_id={session.id}")
    paid = await stripe_client.v1.checkout.sessions.retrieve_async(session.id)
    assert (paid.status, paid.payment_status, paid.url) == ("complete", "paid", None)
    assert paid.customer_details is not None
    assert paid.customer_details.email == "buyer@example.com"
    assert isinstance(paid.payment_intent, str)
    assert paid.payment_intent.startswith("pi_")

    await wait_for_types(receiver, "checkout.session.completed", "payment_intent.succeeded")
    completed = receiver.of_type("checkout.session.completed")[0].event
    assert completed["data"]["object"]["payment_status"] == "paid"
    assert completed["data"]["object"]["client_reference_id"] == "sid-1"

    again = await sandbox.pay(paid_url := session.url)
    assert again.status == 409, paid_url  # a completed session cannot be paid twice
    status, html = await page_text(sandbox, session.url)
    assert status == 409
    assert "already been paid" in html


@pytest.mark.parametrize(
    ("card", "message"),
    [
        ("4000 0000 0000 0002", "Your card was declined."),
        ("4000 0000 0000 9995", "Your card has insufficient funds."),
        ("4000 0000 0000 0069", "Your card has expired."),
        ("4000 0000 0000 0119", "An error occurred while processing your card."),
        ("4100 0000 0000 0019", "Your card was declined."),
        ("4111 1111 1111 1111", "used a non test card"),
    ],
)
async def test_declined_cards_show_the_error_and_send_nothing(
    sandbox: Harness, stripe_client: stripe.StripeClient, card: str, message: str
) -> None:
    session = await new_session(stripe_client)
    response = await sandbox.pay(session.url, card_number=card)
    html = response.html
    assert response.status == 402
    assert message.replace("'", "&#39;") in html
    assert 'role="alert"' in html
    assert 'value="123"' not in html  # the CVC is never echoed back
    still = await stripe_client.v1.checkout.sessions.retrieve_async(session.id)
    assert (still.status, still.payment_intent) == ("open", None)
    assert sandbox.engine.state.events == {}
    assert await sandbox.deliveries() == []
    # The session stays payable: the buyer fixes the card and pays.
    assert (await sandbox.pay(session.url)).status == 303


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"card_number": "4242 4242 4242 4241"}, "Your card number is invalid."),
        ({"card_expiry": "13/30"}, "expiration date is incomplete"),
        ({"card_expiry": "01/20"}, "expiration date is in the past"),
        ({"card_cvc": "12"}, "security code is incomplete"),
        ({"email": "not-an-email"}, "Enter a valid email address."),
        ({"method": "paypal"}, "Choose a payment method."),
    ],
)
async def test_bad_fields_are_named_on_the_page(
    sandbox: Harness, stripe_client: stripe.StripeClient, fields: dict[str, str], message: str
) -> None:
    session = await new_session(stripe_client)
    response = await sandbox.pay(session.url, **fields)
    assert response.status == 400
    assert message.replace("'", "&#39;") in response.html
    assert sandbox.engine.state.events == {}


THREE_D_SECURE = "4000 0027 6000 3184"


def attempt_in(html: str) -> str:
    found = re.search(r'name="attempt" value="([^"]+)"', html)
    assert found is not None, "no 3-D Secure attempt on the page"
    return found.group(1)


async def test_three_d_secure_completes_or_fails(
    sandbox: Harness, stripe_client: stripe.StripeClient
) -> None:
    session = await new_session(stripe_client)
    challenged = await sandbox.pay(session.url, card_number=THREE_D_SECURE)
    assert challenged.status == 200
    assert "3-D Secure" in challenged.html
    authenticate = f"{session.url}/authenticate"
    attempt = attempt_in(challenged.html)

    failed = await sandbox.submit(authenticate, {"attempt": attempt, "action": "fail"})
    assert failed.status == 402
    assert "unable to authenticate" in failed.html
    again = await sandbox.submit(authenticate, {"attempt": attempt, "action": "complete"})
    assert again.status == 404  # an attempt is answered once

    attempt = attempt_in((await sandbox.pay(session.url, card_number=THREE_D_SECURE)).html)
    completed = await sandbox.submit(authenticate, {"attempt": attempt, "action": "complete"})
    assert completed.status == 303
    paid = await stripe_client.v1.checkout.sessions.retrieve_async(session.id)
    assert paid.payment_status == "paid"


async def test_bank_payment_completes_unpaid_then_settles(
    sandbox: Harness, stripe_client: stripe.StripeClient, receiver: Receiver
) -> None:
    session = await new_session(stripe_client)
    assert session.payment_method_types == ["card", "us_bank_account"]
    response = await sandbox.pay_by_bank(session.url)
    assert response.status == 303
    pending = await stripe_client.v1.checkout.sessions.retrieve_async(
        session.id, {"expand": ["payment_intent"]}
    )
    assert (pending.status, pending.payment_status) == ("complete", "unpaid")
    assert isinstance(pending.payment_intent, stripe.PaymentIntent)
    assert pending.payment_intent.status == "processing"
    await wait_for_types(receiver, "checkout.session.completed")

    await sandbox.control(f"/_sandbox/checkout/sessions/{session.id}/settle")
    await wait_for_types(receiver, "checkout.session.async_payment_succeeded")
    order = [t for t in receiver.types() if t.startswith("checkout.session.")]
    assert order == ["checkout.session.completed", "checkout.session.async_payment_succeeded"]
    assert (
        receiver.of_type("checkout.session.completed")[0].event["data"]["object"]["payment_status"]
        == "unpaid"
    )
    settled = await stripe_client.v1.checkout.sessions.retrieve_async(session.id)
    assert settled.payment_status == "paid"


async def test_a_failing_bank_account_ends_in_async_payment_failed(
    sandbox: Harness, stripe_client: stripe.StripeClient, receiver: Receiver
) -> None:
    session = await new_session(stripe_client)
    await sandbox.pay_by_bank(session.url, "000222222227")
    await sandbox.control(f"/_sandbox/checkout/sessions/{session.id}/settle")
    await wait_for_types(receiver, "checkout.session.async_payment_failed")
    assert not receiver.of_type("checkout.session.async_payment_succeeded")
    failed = await stripe_client.v1.checkout.sessions.retrieve_async(
        session.id, {"expand": ["payment_intent"]}
    )
    assert failed.payment_status == "unpaid"
    assert isinstance(failed.payment_intent, stripe.PaymentIntent)
    assert failed.payment_intent.last_payment_error is not None
    assert failed.payment_intent.last_payment_error.code == "insufficient_funds"


async def test_expired_and_unknown_sessions_cannot_be_paid(
    sandbox: Harness, stripe_client: stripe.StripeClient, receiver: Receiver
) -> None:
    session = await new_session(stripe_client)
    await sandbox.control(f"/_sandbox/checkout/sessions/{session.id}/expire")
    await wait_for_types(receiver, "checkout.session.expired")
    expired_event = receiver.of_type("checkout.session.expired")[0].event
    assert expired_event["request"] == {"id": None, "idempotency_key": None}

    response = await sandbox.pay(session.url)
    assert response.status == 410
    status, html = await page_text(sandbox, session.url)
    assert status == 410
    assert "expired" in html
    status, _ = await page_text(sandbox, f"{sandbox.url}/c/pay/cs_test_nothing_here")
    assert status == 404


async def test_text_from_the_merchant_is_escaped(
    sandbox: Harness, stripe_client: stripe.StripeClient
) -> None:
    item = {
        "price_data": {
            "currency": "usd",
            "unit_amount": 700,
            "product_data": {"name": "<script>alert(1)</script>"},
        },
        "quantity": 2,
    }
    session = await new_session(stripe_client, line_items=[item])
    status, html = await page_text(sandbox, session.url)
    assert status == 200
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "14.00 USD" in html


async def test_a_real_card_number_is_never_echoed_back(
    sandbox: Harness, stripe_client: stripe.StripeClient
) -> None:
    session = await new_session(stripe_client)
    response = await sandbox.pay(session.url, card_number="4111 1111 1111 1111")
    assert response.status == 402
    assert "4111" not in response.html


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"card_number=\xff\xfe", "application/x-www-form-urlencoded"),
        (b"card_number=1", "application/x-www-form-urlencoded; charset=bogus"),
        (b"--x\r\nnot a part", "multipart/form-data"),
    ],
)
async def test_an_unreadable_form_is_a_400_page(
    sandbox: Harness, stripe_client: stripe.StripeClient, body: bytes, content_type: str
) -> None:
    session = await new_session(stripe_client)
    assert session.url is not None
    async with sandbox.http.post(
        session.url, data=body, headers={"Content-Type": content_type}
    ) as response:
        text = await response.text()
    assert response.status == 400
    assert "could not be read" in text
    assert "Traceback" not in text


async def test_odd_digits_in_a_card_number_are_an_invalid_number(
    sandbox: Harness, stripe_client: stripe.StripeClient
) -> None:
    session = await new_session(stripe_client)
    response = await sandbox.pay(session.url, card_number="4242 4242 4242 42²2")
    assert response.status == 400


async def test_an_email_the_merchant_gave_is_locked(
    sandbox: Harness, stripe_client: stripe.StripeClient
) -> None:
    session = await new_session(stripe_client, customer_email="known@example.com")
    _, html = await page_text(sandbox, session.url)
    assert 'value="known@example.com" readonly' in html
    await sandbox.pay(session.url, email="someone-else@example.com")
    paid = await stripe_client.v1.checkout.sessions.retrieve_async(session.id)
    assert paid.customer_details is not None
    assert paid.customer_details.email == "known@example.com"
