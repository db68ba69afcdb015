"""Logging in with a Mycelium address: a code through the node, or a proof with the node's key.

POST /login sends a one-time code to the address (through the local node, or the sandbox
outbox) and records a challenge; POST /login/verify takes the code, or a key proof over the
challenge's nonce, and opens a session. Each answer is checked inside one write transaction, so
wrong tries are counted strictly (at most MAX_WRONG_TRIES, however many arrive at once) and a
right answer logs in exactly once.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Final

import apsw
from aiohttp import web

from ..money import format_amount
from ..mycelium.address import AddressError, address_of, parse_address
from ..mycelium.messages import NodeRefused, NodeUnavailable, SandboxOutbox
from ..mycelium.proof import ProofError, parse_proof, proof_holds, public_key_of
from ..store import balances, logins, users, web_sessions
from ..store.logins import Challenge
from .auth import SESSION_COOKIE, end_session, start_session, token_hash, visitor_of
from .guards import authenticated, current_user
from .keys import CLOCK, LOGIN_KEY, MESSENGER, SETTINGS, STORE
from .pages import message_page, render

log = logging.getLogger(__name__)

TOPIC: Final = "hero_onboarding.login"
RATE_WINDOW_S: Final = 3600
CODE_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
CODE_LENGTH: Final = 10  # 50 bits
MAX_FIELD: Final = 200

routes = web.RouteTableDef()


class Answer(StrEnum):
    ACCEPTED = "accepted"
    WRONG = "wrong"
    DEAD = "dead"  # used, expired, or out of tries
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Verdict:
    answer: Answer
    challenge: Challenge | None = None
    tries_left: int = 0
    reason: str = ""


def client_address(request: web.Request) -> str:
    """Who is asking, for rate limits: the TCP peer, or what our reverse proxy says it saw.

    With X-Forwarded-For only the last entry is trusted: it is the one our proxy added; the
    ones before it are whatever the client sent.
    """
    header = request.app[SETTINGS].client_ip_header
    if header:
        forwarded = request.headers.get(header, "").split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(forwarded))
        except ValueError:
            pass
    return request.remote or "unknown"


def see_other(location: str) -> web.Response:
    """A 303 that can carry cookies (raising HTTPSeeOther cannot, once it is raised)."""
    return web.Response(status=303, headers={"Location": location})


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def shown_code(code: str) -> str:
    return f"{code[:5]}-{code[5:]}"


def normalised_code(typed: str) -> str:
    """What a person typed, read as Crockford base32 would read it."""
    cleaned = "".join(ch for ch in typed.upper() if ch not in " -")
    return cleaned.translate(str.maketrans("ILO", "110"))


def code_hash(challenge_id: str, code: str) -> str:
    return hashlib.sha256(f"{challenge_id}:{code}".encode()).hexdigest()


# -- pages ------------------------------------------------------------------------------------


@routes.get("/")
async def home(request: web.Request) -> web.Response:
    visitor = await visitor_of(request)
    if visitor.user is None:
        return await render(request, "login.html", address="", error=None)
    balance = await request.app[STORE].read(partial(balances.get, sid=visitor.user.sid))
    shown = (
        "unknown" if balance is None else format_amount(balance.credit_balance, balance.currency)
    )
    return await render(request, "home.html", balance=shown)


@routes.post("/login")
async def send_code(request: web.Request) -> web.Response:
    settings, store = request.app[SETTINGS], request.app[STORE]
    form = await request.post()
    typed = str(form.get("address", ""))[:MAX_FIELD]
    try:
        address = parse_address(typed)
    except AddressError as exc:
        return await render(request, "login.html", 400, address=typed, error=str(exc))

    now = int(request.app[CLOCK]())
    client_ip = client_address(request)
    since = now - RATE_WINDOW_S
    sent_to_address = await store.read(partial(logins.count_since, since=since, address=address))
    sent_from_ip = await store.read(partial(logins.count_since, since=since, client_ip=client_ip))
    if (
        sent_to_address >= settings.login_max_per_address
        or sent_from_ip >= settings.login_max_per_ip
    ):
        response = await message_page(
            request,
            429,
            "Too many login codes",
            "Too many codes were asked for recently. Wait an hour, or use a code you already have.",
        )
        response.headers["Retry-After"] = str(RATE_WINDOW_S)
        return response

    code = new_code()
    challenge_id = secrets.token_urlsafe(18)
    challenge = Challenge(
        id=challenge_id,
        mycelium_address=address,
        code_hash=code_hash(challenge_id, code),
        nonce=secrets.token_hex(16),
        client_ip=client_ip,
        attempts=0,
        created_at=now,
        expires_at=now + settings.login_code_ttl_s,
    )
    minutes = settings.login_code_ttl_s // 60
    text = (
        f"Your Hero onboarding login code is {shown_code(code)}. It is valid for {minutes} "
        f"minutes at {settings.public_url}. If you did not ask for it, ignore this message."
    )
    try:
        await request.app[MESSENGER].send(address, TOPIC, text.encode())
    except NodeUnavailable:
        log.warning(
            "login code for %s not sent: no Mycelium node at %s", address, settings.mycelium_api_url
        )
        return await message_page(
            request,
            503,
            "Mycelium node unreachable",
            "We could not reach our Mycelium node to send your code, so nothing was sent. "
            "Try again in a few minutes.",
        )
    except NodeRefused as exc:
        log.warning("login code for %s not sent: %s", address, exc)
        return await message_page(
            request,
            502,
            "Code not sent",
            "Our Mycelium node would not take the message for that address, so nothing was "
            "sent. Check the address and try again.",
        )
    await store.write(partial(logins.insert, challenge=challenge))
    raise web.HTTPSeeOther(f"/login/verify?challenge={challenge.id}")


@routes.get("/login/verify")
async def verify_page(request: web.Request) -> web.Response:
    challenge_id = request.query.get("challenge", "")[:MAX_FIELD]
    challenge = await request.app[STORE].read(partial(logins.get, challenge_id=challenge_id))
    now = int(request.app[CLOCK]())
    if challenge is None or not _live(challenge, now):
        return await _dead_challenge_page(request)
    return await _verify_form(request, challenge)


@routes.post("/login/verify")
async def verify(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    challenge_id = str(form.get("challenge", ""))[:MAX_FIELD]
    code = str(form.get("code", ""))[:MAX_FIELD].strip()
    proof = str(form.get("proof", ""))[:MAX_FIELD].strip()
    if not code and not proof:
        challenge = await request.app[STORE].read(partial(logins.get, challenge_id=challenge_id))
        if challenge is None or not _live(challenge, int(request.app[CLOCK]())):
            return await _dead_challenge_page(request)
        return await _verify_form(
            request, challenge, "Enter the code from the message, or a key proof.", 400
        )

    settings = request.app[SETTINGS]
    now = int(request.app[CLOCK]())
    session_token = secrets.token_urlsafe(32)
    verdict: Verdict = await request.app[STORE].write(
        partial(
            _answer,
            challenge_id=challenge_id,
            code=code,
            proof=proof,
            server_key=request.app[LOGIN_KEY],
            currency=settings.currency,
            now=now,
            session_token_hash=token_hash(session_token),
            session_expires_at=now + settings.session_ttl_s,
            previous_token_hash=_previous_token_hash(request),
        )
    )
    if verdict.answer is Answer.ACCEPTED:
        assert verdict.challenge is not None
        log.info("login: %s (%s)", verdict.challenge.mycelium_address, verdict.reason)
        response = see_other("/")
        start_session(request, response, session_token)
        return response
    if verdict.answer is Answer.WRONG and verdict.challenge is not None:
        return await _verify_form(
            request,
            verdict.challenge,
            f"{verdict.reason}. {_tries_text(verdict.tries_left)}",
            400,
        )
    if verdict.answer is Answer.DEAD and verdict.reason:
        return await message_page(
            request, 410, "This login has ended", f"{verdict.reason} Ask for a new code."
        )
    return await _dead_challenge_page(request)


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
    address = None
    if typed := request.query.get("address", ""):
        try:
            address = parse_address(typed)
        except AddressError:
            address = None
    return await render(request, "outbox.html", messages=outbox.messages(address), address=address)


@routes.get("/account")
@authenticated
async def account(request: web.Request) -> web.Response:
    """Who the session belongs to, for pages and scripts that need it (JSON)."""
    user = current_user(request)
    return web.json_response({"sid": user.sid, "mycelium_address": user.mycelium_address})


# -- checking an answer, inside one write transaction --------------------------------------------


def _answer(
    conn: apsw.Connection,
    *,
    challenge_id: str,
    code: str,
    proof: str,
    server_key: bytes,
    currency: str,
    now: int,
    session_token_hash: str,
    session_expires_at: int,
    previous_token_hash: str | None,
) -> Verdict:
    challenge = logins.get(conn, challenge_id)
    if challenge is None:
        return Verdict(Answer.UNKNOWN)
    if challenge.used_at is not None:
        return Verdict(Answer.DEAD, challenge, reason="This login code was already used.")
    if now >= challenge.expires_at:
        return Verdict(Answer.DEAD, challenge, reason="This login code has expired.")
    if challenge.tries_left() == 0:
        return Verdict(Answer.DEAD, challenge, reason="There were too many wrong tries.")
    if code:
        right = hmac.compare_digest(
            code_hash(challenge.id, normalised_code(code)), challenge.code_hash
        )
        how, wrong = "code", "That code is not right"
    else:
        right, wrong = _proof_right(challenge, proof, server_key)
        how = "key proof"
    if not right:
        logins.add_wrong_try(conn, challenge.id)
        left = challenge.tries_left() - 1
        if left == 0:
            return Verdict(Answer.DEAD, challenge, reason=f"{wrong}, and that was the last try.")
        return Verdict(Answer.WRONG, challenge, tries_left=left, reason=wrong)
    if not logins.consume(conn, challenge.id, now=now):
        return Verdict(Answer.DEAD, challenge, reason="This login code was already used.")
    user = users.register(conn, challenge.mycelium_address, currency=currency, now=now)
    if previous_token_hash is not None:  # a new login replaces the browser's old session
        web_sessions.delete(conn, previous_token_hash)
    web_sessions.insert(
        conn,
        token_hash=session_token_hash,
        sid=user.sid,
        csrf_token=secrets.token_urlsafe(24),
        now=now,
        expires_at=session_expires_at,
    )
    return Verdict(Answer.ACCEPTED, challenge, reason=how)


def _proof_right(challenge: Challenge, proof: str, server_key: bytes) -> tuple[bool, str]:
    try:
        public_key, mac = parse_proof(proof)
    except ProofError as exc:
        return False, f"That proof cannot be read: {exc}"
    if address_of(public_key) != challenge.mycelium_address:
        return False, "That key belongs to another Mycelium address"
    if not proof_holds(server_key, public_key, challenge.nonce, mac):
        return False, "That proof does not match this login's challenge"
    return True, ""


def _previous_token_hash(request: web.Request) -> str | None:
    token = request.cookies.get(SESSION_COOKIE)
    return token_hash(token) if token else None


def _live(challenge: Challenge, now: int) -> bool:
    return challenge.used_at is None and now < challenge.expires_at and challenge.tries_left() > 0


def _tries_text(left: int) -> str:
    return "1 try left." if left == 1 else f"{left} tries left."


async def _verify_form(
    request: web.Request, challenge: Challenge, error: str | None = None, status: int = 200
) -> web.Response:
    settings = request.app[SETTINGS]
    return await render(
        request,
        "verify.html",
        status,
        challenge=challenge,
        topic=TOPIC,
        minutes=settings.login_code_ttl_s // 60,
        server_key=public_key_of(request.app[LOGIN_KEY]).hex(),
        error=error,
    )


async def _dead_challenge_page(request: web.Request) -> web.Response:
    return await message_page(
        request,
        410,
        "This login has ended",
        "This login code has expired, was used, or had too many wrong tries. Ask for a new code.",
    )
