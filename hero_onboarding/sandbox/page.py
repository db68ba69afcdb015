"""The hosted payment page at `session.url`: plain HTML forms, no JavaScript needed.

A browser and an HTTP client pay the same way: GET the page, POST the form. Success answers
303 to the session's success_url with the id filled in; a decline re-renders the page with
Stripe's message (402) and leaves the session open.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

from aiohttp import web

from ..money import format_amount
from ..serving import FORM_READ_ERRORS
from . import cards
from .buyer import PageError, PaymentForm, PayResult
from .engine import amount_text
from .keys import BUYER, CONFIG, POKE, SANDBOX, SAVE, TEMPLATES
from .state import Obj

FIELDS: Final = (
    "method", "email", "name", "card_number", "card_expiry", "card_cvc", "routing_number",
    "account_number",
)  # fmt: skip
MAX_FIELD: Final = 200
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

routes = web.RouteTableDef()


@routes.get("/c/pay/{session}")
async def show(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    revision = sandbox.revision
    try:
        session = request.app[BUYER].payable_session(request.match_info["session"])
        response = _checkout_page(request, session, PaymentForm(method="card", email=""), None)
    except PageError as exc:
        response = _closed_page(request, exc)
    if sandbox.revision != revision:  # the visit found it expired
        await request.app[SAVE]()
    return response


@routes.post("/c/pay/{session}")
async def pay(request: web.Request) -> web.Response:
    fields = await _form_fields(request)
    form = PaymentForm(**{name: fields.get(name, "") for name in FIELDS})
    checkout_id = request.match_info["session"]
    try:
        result = request.app[BUYER].pay(checkout_id, form)
    except PageError as exc:
        await request.app[SAVE]()
        return _closed_page(request, exc)
    return await _next_step(request, checkout_id, form, result)


@routes.post("/c/pay/{session}/authenticate")
async def authenticate(request: web.Request) -> web.Response:
    fields = await _form_fields(request)
    checkout_id = request.match_info["session"]
    try:
        result = request.app[BUYER].authenticate(
            checkout_id, fields.get("attempt", ""), approved=fields.get("action") == "complete"
        )
    except PageError as exc:
        await request.app[SAVE]()
        return _closed_page(request, exc)
    return await _next_step(request, checkout_id, PaymentForm(method="card", email=""), result)


async def _next_step(
    request: web.Request, checkout_id: str, form: PaymentForm, result: PayResult
) -> web.Response:
    await request.app[SAVE]()
    if result.redirect is not None:
        request.app[POKE]()  # a delayed payment may now be due to settle
        raise web.HTTPSeeOther(result.redirect)
    session = request.app[SANDBOX].session(checkout_id)
    if result.challenge is not None:
        return _render(
            request,
            "authenticate.html",
            200,
            amount=amount_text(session),
            attempt=result.challenge,
            action=f"/c/pay/{checkout_id}/authenticate",
        )
    # Never echo a CVC, nor a card number that is not one of Stripe's test cards.
    test_card = cards.digits_of(form.card_number) in cards.TEST_CARDS
    shown = replace(form, card_cvc="", card_number=form.card_number if test_card else "")
    return _checkout_page(request, session, shown, result, status=result.status)


async def _form_fields(request: web.Request) -> dict[str, str]:
    """The posted fields as short strings; a body that is not a readable form is a 400 page."""
    try:
        posted = await request.post()
    except FORM_READ_ERRORS:
        raise web.HTTPBadRequest(
            text="The payment form could not be read; reload the page and try again."
        ) from None
    return {
        name: value.strip()[:MAX_FIELD] for name, value in posted.items() if isinstance(value, str)
    }


def _checkout_page(
    request: web.Request,
    session: Obj,
    form: PaymentForm,
    result: PayResult | None,
    *,
    status: int = 200,
) -> web.Response:
    sandbox = request.app[SANDBOX]
    items = [
        {
            "description": item["description"],
            "quantity": item["quantity"],
            "amount": format_amount(item["amount_total"], item["currency"]),
        }
        for item in sandbox.state.line_items[session["id"]]
    ]
    if session["customer_email"]:  # Checkout locks an email the merchant already knows
        form = replace(form, email=session["customer_email"])
    return _render(
        request,
        "checkout.html",
        status,
        email_locked=bool(session["customer_email"]),
        merchant=request.app[CONFIG].account_name,
        amount=amount_text(session),
        line_items=items,
        methods=session["payment_method_types"],
        form=form,
        error=result.error if result else None,
        field=result.field if result else None,
        action=f"/c/pay/{session['id']}",
        cancel_url=session["cancel_url"],
    )


def _closed_page(request: web.Request, exc: PageError) -> web.Response:
    return _render(
        request,
        "closed.html",
        exc.status,
        title=exc.title,
        message=exc.message,
        return_url=exc.return_url,
    )


def _render(request: web.Request, template: str, status: int, **context: Any) -> web.Response:
    html = request.app[TEMPLATES].get_template(template).render(**context)
    return web.Response(
        text=html, status=status, content_type="text/html", headers=SECURITY_HEADERS
    )
