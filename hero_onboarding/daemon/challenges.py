"""The login transactions, free of HTTP: opening a challenge, and answering one.

Each runs as one write job (store.write), and jobs run one after another on the writer: so the
rate limits are counted and the challenge inserted atomically (a burst of requests cannot slip
past them), and every answer sees every earlier wrong try (at most MAX_WRONG_TRIES, however many
arrive at once), and a right answer logs in exactly once.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import apsw

from ..mycelium.address import address_of
from ..mycelium.proof import ProofError, parse_proof, proof_holds
from ..store import logins, users, web_sessions
from ..store.logins import Challenge

TOPIC: Final = "hero_onboarding.login"
RATE_WINDOW_S: Final = 3600
CODE_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
CODE_LENGTH: Final = 10  # 50 bits


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def shown_code(code: str) -> str:
    return f"{code[:5]}-{code[5:]}"


def normalised_code(typed: str) -> str:
    """What a person typed, read as Crockford base32 reads it (case, dashes, O/0, I/L/1)."""
    cleaned = "".join(ch for ch in typed.upper() if ch not in " -")
    return cleaned.translate(str.maketrans("ILO", "110"))


def code_hash(challenge_id: str, code: str) -> str:
    return hashlib.sha256(f"{challenge_id}:{code}".encode()).hexdigest()


def client_bucket(address: str) -> str:
    """The rate-limit bucket of a client address: IPv4 as is, IPv6 by its /64 (one line's)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def new_nonce(site: str) -> str:
    """A single-use challenge that names the site it is for, so login-proof can say so."""
    return f"{secrets.token_hex(16)}@{site}"


@dataclass(frozen=True)
class Opened:
    """A new challenge and the code to send (None: key proof only), or how long to wait."""

    challenge: Challenge | None
    code: str | None = None
    retry_after_s: int = 0


def open_challenge(
    conn: apsw.Connection,
    *,
    address: str,
    client: str,
    site: str,
    now: int,
    ttl_s: int,
    max_codes_per_address: int,
    max_per_client: int,
) -> Opened:
    """Count, then insert, in one transaction.

    Past the client's limit nothing is made. Past the address's limit (which a stranger can
    exhaust) the challenge is still made, without a code: its owner can always use the key proof.
    """
    counts = logins.recent_counts(conn, since=now - RATE_WINDOW_S, address=address, client=client)
    if counts.from_client >= max_per_client:
        oldest = counts.oldest_from_client or now
        return Opened(None, retry_after_s=max(1, oldest + RATE_WINDOW_S - now))
    challenge_id = secrets.token_urlsafe(18)
    code = new_code() if counts.codes_to_address < max_codes_per_address else None
    challenge = Challenge(
        id=challenge_id,
        mycelium_address=address,
        code_hash=code_hash(challenge_id, code) if code else None,
        nonce=new_nonce(site),
        client_ip=client,
        attempts=0,
        created_at=now,
        expires_at=now + ttl_s,
    )
    logins.insert(conn, challenge)
    return Opened(challenge, code)


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
    sid: str | None = None


def answer_challenge(
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
    """Check a code or key proof; on success consume the challenge and open a session."""
    challenge = logins.get(conn, challenge_id)
    if challenge is None:
        return Verdict(Answer.UNKNOWN)
    if not challenge.is_live(now):
        return Verdict(Answer.DEAD, challenge, reason=_why_dead(challenge, now))
    if code:
        right, how, wrong = _code_right(challenge, code), "code", "That code is not right"
        if challenge.code_hash is None:
            wrong = "No code was sent for this login; use the key proof"
    else:
        right, wrong = _proof_right(challenge, proof, server_key)
        how = "key proof"
    if not right:
        logins.add_wrong_try(conn, challenge.id)
        left = challenge.tries_left() - 1
        if left == 0:
            return Verdict(Answer.DEAD, challenge, reason=f"{wrong}, and that was the last try.")
        return Verdict(Answer.WRONG, challenge, tries_left=left, reason=wrong)
    if not logins.consume(conn, challenge.id, now=now):  # cannot happen: checked just above
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
    return Verdict(Answer.ACCEPTED, challenge, reason=how, sid=user.sid)


def _why_dead(challenge: Challenge, now: int) -> str:
    if challenge.used_at is not None:
        return "This login was already used."
    if now >= challenge.expires_at:
        return "This login code has expired."
    return "There were too many wrong tries."


def _code_right(challenge: Challenge, code: str) -> bool:
    if challenge.code_hash is None:
        return False
    typed = code_hash(challenge.id, normalised_code(code))
    return hmac.compare_digest(typed, challenge.code_hash)


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
