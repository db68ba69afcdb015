"""The login pages: ask for a code, answer with the code or a key proof, log out.

POST /login opens a challenge (challenges.py) and sends its code to the address, through the
local Mycelium node or the sandbox outbox. When no code can go (the node is down, or the address
had too many codes this hour) the challenge stays open for the key proof alone, so the owner of
an address is never locked out by a stranger or by our node. POST /login/verify answers it and
opens a session.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace
from functools import partial
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web

from ..mycelium.address import AddressError, parse_address
from ..mycelium.messages import NodeError, NodeUnavailable, SandboxOutbox
from ..store import logins
from ..store.logins import Challenge
from .auth import end_session, session_token_of, start_session, token_hash, visitor_of
from .challenges import (
    TOPIC,
    Answer,
    Verdict,
    answer_challenge,
    client_bucket,
    open_challenge,
    shown_code,
)
from .guards import authenticated, current_user
from .keys import CLOCK, LOGIN_KEY, LOGIN_PUBLIC_KEY, MESSENGER, SETTINGS, STORE
from .pages import message_page, render
from .peers import client_address
from .purchase import dashboard

log = logging.getLogger(__name__)

MAX_FIELD: Final = 200
NO_CODE_SENT: Final = (
    "Too many codes went to this address in the last hour, so none was sent this time. Prove "
    "it with your node's key below, or try again later."
)

routes = web.RouteTableDef()


def see_other(location: str) -> web.Response:
    """A 303 that can carry cookies (a raised HTTPSeeOther cannot)."""
    return web.Response(status=303, headers={"Location": location})


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    visitor = await visitor_of(request)
    if visitor.user is None:
        return await render(request, "login.html", address="", error=None)
    return await dashboard(request, visitor.user)


@routes.post("/login")
async def send_code(request: web.Request) -> web.Response:
    settings, store = request.app[SETTINGS], request.app[STORE]
    form = await request.post()
    typed = str(form.get("address", ""))[:MAX_FIELD]
    try:
        address = parse_address(typed)
    except AddressError as exc:
        return await render(request, "login.html", 400, address=typed, error=str(exc))

    opened = await store.write(
        partial(
            open_challenge,
            address=address,
            client=client_bucket(client_address(request)),
            site=urlsplit(settings.public_url).netloc.lower(),
            now=int(request.app[CLOCK]()),
            ttl_s=settings.login_code_ttl_s,
            max_codes_per_address=settings.login_max_per_address,
            max_per_client=settings.login_max_per_ip,
        )
    )
    if opened.challenge is None:
        response = await message_page(
            request,
            429,
            "Too many logins",
            "Too many logins were started from your network recently. Wait a while and try "
            "again, or use a code you already have.",
        )
        response.headers["Retry-After"] = str(opened.retry_after_s)
        return response
    challenge = opened.challenge
    if opened.code is not None:
        minutes = settings.login_code_ttl_s // 60
        text = (
            f"Your Hero onboarding login code is {shown_code(opened.code)}. It is valid for "
            f"{minutes} minutes at {settings.public_url}. If you did not ask for it, ignore "
            "this message."
        )
        try:
            await request.app[MESSENGER].send(address, TOPIC, text.encode())
        except NodeError as exc:
            await store.write(partial(logins.drop_code, challenge_id=challenge.id))
            log.warning("login code for %s not sent: %s", address, exc)
            unreachable = isinstance(exc, NodeUnavailable)
            notice = (
                "We could not reach our Mycelium node, so no code was sent. You can still "
                "prove control with your node's key below."
                if unreachable
                else "Our Mycelium node would not take a message for that address, so no code "
                "was sent. Check the address, or prove control with your node's key below."
            )
            return await _verify_form(
                request,
                replace(challenge, code_hash=None),
                notice=notice,
                status=503 if unreachable else 502,
            )
    raise web.HTTPSeeOther(f"/login/verify?challenge={challenge.id}")


@routes.get("/login/verify")
async def verify_page(request: web.Request) -> web.Response:
    challenge = await _live_challenge(request, request.query.get("challenge", ""))
    if challenge is None:
        return await _dead_challenge_page(request)
    return await _verify_form(request, challenge)


@routes.post("/login/verify")
async def verify(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    challenge_id = str(form.get("challenge", ""))[:MAX_FIELD]
    code = str(form.get("code", ""))[:MAX_FIELD].strip()
    proof = str(form.get("proof", ""))[:MAX_FIELD].strip()
    if not code and not proof:
        challenge = await _live_challenge(request, challenge_id)
        if challenge is None:
            return await _dead_challenge_page(request)
        return await _verify_form(
            request, challenge, error="Enter the code from the message, or a key proof.", status=400
        )

    settings = request.app[SETTINGS]
    now = int(request.app[CLOCK]())
    session_token = secrets.token_urlsafe(32)
    previous = session_token_of(request)
    verdict: Verdict = await request.app[STORE].write(
        partial(
            answer_challenge,
            challenge_id=challenge_id,
            code=code,
            proof=proof,
            server_key=request.app[LOGIN_KEY],
            currency=settings.currency,
            now=now,
            session_token_hash=token_hash(session_token),
            session_expires_at=now + settings.session_ttl_s,
            previous_token_hash=token_hash(previous) if previous else None,
        )
    )
    if verdict.answer is Answer.ACCEPTED:
        assert verdict.challenge is not None
        log.info("login: %s by %s", verdict.challenge.mycelium_address, verdict.reason)
        response = see_other("/")
        start_session(request, response, session_token)
        return response
    if verdict.answer is Answer.WRONG:
        assert verdict.challenge is not None
        left = "1 try left." if verdict.tries_left == 1 else f"{verdict.tries_left} tries left."
        return await _verify_form(
            request, verdict.challenge, error=f"{verdict.reason}. {left}", status=400
        )
    return await _dead_challenge_page(request, verdict.reason or None)


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    response = see_other("/")
    await end_session(request, response)
    return response


@routes.get("/sandbox/outbox")
async def sandbox_outbox(request: web.Request) -> web.Response:
    """Sandbox mode's stand-in for reading messages on a node: clearly labelled, test only."""
    outbox = request.app[MESSENGER]
    if request.app[SETTINGS].mode != "sandbox" or not isinstance(outbox, SandboxOutbox):
        raise web.HTTPNotFound()
    try:
        address = parse_address(request.query.get("address", "")[:MAX_FIELD])
    except AddressError:
        address = None
    return await render(request, "outbox.html", messages=outbox.messages(address), address=address)


@routes.get("/account")
@authenticated
async def account(request: web.Request) -> web.Response:
    """Who the session belongs to, for pages and scripts that need it (JSON)."""
    user = current_user(request)
    return web.json_response({"sid": user.sid, "mycelium_address": user.mycelium_address})


async def _live_challenge(request: web.Request, challenge_id: str) -> Challenge | None:
    challenge = await request.app[STORE].read(
        partial(logins.get, challenge_id=challenge_id[:MAX_FIELD])
    )
    if challenge is None or not challenge.is_live(int(request.app[CLOCK]())):
        return None
    return challenge


async def _verify_form(
    request: web.Request,
    challenge: Challenge,
    *,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> web.Response:
    settings = request.app[SETTINGS]
    if notice is None and challenge.code_hash is None:
        notice = NO_CODE_SENT
    return await render(
        request,
        "verify.html",
        status,
        challenge=challenge,
        code_sent=challenge.code_hash is not None,
        topic=TOPIC,
        minutes=settings.login_code_ttl_s // 60,
        server_key=request.app[LOGIN_PUBLIC_KEY],
        error=error,
        notice=notice,
    )


async def _dead_challenge_page(request: web.Request, reason: str | None = None) -> web.Response:
    return await message_page(
        request,
        410,
        "This login has ended",
        (reason or "This login has expired, was used, or had too many wrong tries.")
        + " Ask for a new code.",
    )
