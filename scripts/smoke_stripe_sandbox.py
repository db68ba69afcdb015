#!/usr/bin/env python3
"""The operator's smoke test of a running service: buy, replay, tamper, restart.

Run by scripts/smoke_stripe_sandbox.sh. Against `hero-onboarding --start --sandbox` it needs
nothing else: it logs in through the sandbox outbox, pays on the local sandbox's page with
4242 4242 4242 4242 and reads the keys from the data directory. Against real Stripe test mode
(service started with --mode sandbox for the outbox, STRIPE_SANDBOX_SECRET_KEY and
STRIPE_WEBHOOK_SIGNING_KEY in this shell, `stripe listen --forward-to .../webhooks/stripe`
running), it prints Stripe's payment page and waits for you to pay there.

Checks, each printed PASS or FAIL: the checkout round trip credits exactly the amount; the same
webhook again credits nothing; a tampered webhook gets 401; after --restart the balance is the
same after --stop and --start. Exit 0 only if all pass; a check that cannot run is a FAIL line.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import aiohttp  # noqa: E402
import stripe  # noqa: E402

from hero_onboarding.config import load_settings  # noqa: E402
from hero_onboarding.control.sandbox_keys import keys_path, read  # noqa: E402

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CHALLENGE = re.compile(r'name="challenge" value="([^"]+)"')
CODE = re.compile(r"login code is ([0-9A-Z]{5}-[0-9A-Z]{5})")
BALANCE = re.compile(r'data-testid="balance">([^<]+)<')
ADDRESS = "4a1:2b3c:4d5e:6f70:8192:a3b4:c5d6:5e0e"
AMOUNT = 1000
CARD = {
    "method": "card", "email": "smoke@example.com", "card_number": "4242 4242 4242 4242",
    "card_expiry": "12 / 34", "card_cvc": "123", "name": "Smoke Test",
}  # fmt: skip


@dataclass
class Keys:
    api_key: str
    signing_key: str
    api_base: str | None  # None: real Stripe


class Buyer:
    """A browser without JavaScript: cookies kept, forms posted with their CSRF token."""

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url, self.http, self.csrf = url, http, ""

    async def get(self, path: str) -> tuple[int, str, str | None]:
        async with self.http.get(self.url + path, allow_redirects=False) as response:
            return await self._read(response)

    async def post(self, path: str, form: dict[str, str]) -> tuple[int, str, str | None]:
        data = {"csrf_token": self.csrf, **form}
        async with self.http.post(self.url + path, data=data, allow_redirects=False) as response:
            return await self._read(response)

    async def _read(self, response: aiohttp.ClientResponse) -> tuple[int, str, str | None]:
        html = await response.text()
        if found := CSRF.search(html):
            self.csrf = found.group(1)
        return response.status, html, response.headers.get("Location")

    async def balance(self) -> str:
        _, html, _ = await self.get("/")
        found = BALANCE.search(html)
        if found is None:
            raise Failure("the dashboard shows no balance (not logged in?)")
        return found.group(1)


class Failure(Exception):
    pass


State = dict[str, Any]  # what one check leaves for the next (the checkout, its event, balance)
Verdict = tuple[bool, str]


async def log_in(buyer: Buyer, address: str) -> None:
    await buyer.get("/")
    status, html, location = await buyer.post("/login", {"address": address})
    if status != 303 or location is None:
        raise Failure(f"POST /login answered {status}")
    challenge = location.split("challenge=", 1)[-1]
    status, html, _ = await buyer.get(f"/sandbox/outbox?address={address}")
    code = CODE.search(html) if status == 200 else None
    if code is None:
        raise Failure("no login code in /sandbox/outbox: start the service with --mode sandbox")
    status, _, _ = await buyer.post("/login/verify", {"challenge": challenge, "code": code[1]})
    if status != 303:
        raise Failure(f"POST /login/verify answered {status}")


async def pay(buyer: Buyer, keys: Keys, wait_s: float) -> str:
    """Open a checkout for AMOUNT and pay it; the checkout's id."""
    await buyer.get("/")
    status, html, page = await buyer.post(f"/payment/intent?amount={AMOUNT}", {})
    if status != 303 or page is None:
        raise Failure(f"POST /payment/intent answered {status}")
    checkout_id = urlsplit(page).path.rsplit("/", 1)[-1]
    if keys.api_base is not None and page.startswith(keys.api_base):
        async with buyer.http.post(page, data=CARD, allow_redirects=False) as response:
            if response.status != 303:
                raise Failure(f"the sandbox's payment page answered {response.status}")
    else:
        print(f"  open {page}\n  and pay with 4242 4242 4242 4242 (waiting {wait_s:.0f} s)")
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        _, html, _ = await buyer.get(f"/payment/return?session_id={checkout_id}")
        if "Payment received" in html:
            return checkout_id
        await asyncio.sleep(1)
    raise Failure(f"checkout {checkout_id} was not paid within {wait_s:.0f} s")


def completed_event(keys: Keys, checkout_id: str) -> str:
    """The checkout.session.completed event for the checkout, as Stripe sends it (JSON)."""
    client = stripe.StripeClient(
        keys.api_key, base_addresses={"api": keys.api_base} if keys.api_base else None
    )
    listed = client.v1.events.list({"type": "checkout.session.completed", "limit": 100})
    for event in listed.data:
        if event.data.object.id == checkout_id:
            return json.dumps(event.to_dict())
    raise Failure(f"Stripe lists no checkout.session.completed for {checkout_id}")


def stripe_signature(body: str, secret: str) -> str:
    """The Stripe-Signature header Stripe would send: t=<now>,v1=HMAC-SHA256(t.body)."""
    timestamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


async def deliver(buyer: Buyer, body: str, signature: str) -> tuple[int, str]:
    async with buyer.http.post(
        buyer.url + "/webhooks/stripe",
        data=body.encode(),
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    ) as response:
        return response.status, await response.text()


async def smoke(args: argparse.Namespace, keys: Keys) -> list[tuple[str, bool, str]]:
    results: list[tuple[str, bool, str]] = []

    def record(check: str, ok: bool, detail: str) -> None:
        results.append((check, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'}  {check}: {detail}", flush=True)

    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        buyer = Buyer(args.url.rstrip("/"), http)
        checks = [
            ("checkout round trip with 4242", round_trip),
            ("duplicate webhook credits nothing", duplicate),
            ("tampered webhook is refused", tampered),
        ]
        if not args.no_restart:
            checks.append(("balance kept across --stop and --start", restart))
        state: State = {}
        for check, run in checks:
            try:
                ok, detail = await run(buyer, keys, args, state)
            except (Failure, aiohttp.ClientError, OSError, stripe.StripeError) as exc:
                ok, detail = False, f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc)
            record(check, ok, detail)
            if not ok and check.startswith("checkout"):
                break  # nothing to replay without a paid checkout
    return results


async def round_trip(buyer: Buyer, keys: Keys, args: argparse.Namespace, state: State) -> Verdict:
    await log_in(buyer, args.address)
    before = await buyer.balance()
    state["checkout"] = await pay(buyer, keys, args.wait)
    state["balance"] = after = await buyer.balance()
    return _cents(after) - _cents(before) == AMOUNT, f"balance {before} -> {after}"


async def duplicate(buyer: Buyer, keys: Keys, args: argparse.Namespace, state: State) -> Verdict:
    state["event"] = body = await asyncio.to_thread(completed_event, keys, state["checkout"])
    status, answer = await deliver(buyer, body, stripe_signature(body, keys.signing_key))
    again = await buyer.balance()
    ok = status == 200 and '"duplicate"' in answer and again == state["balance"]
    return ok, f"HTTP {status} {answer.strip()}, balance {again}"


async def tampered(buyer: Buyer, keys: Keys, args: argparse.Namespace, state: State) -> Verdict:
    body = state["event"]
    signature = stripe_signature(body, keys.signing_key)
    changed = body.replace(f'"amount_total": {AMOUNT}', f'"amount_total": {AMOUNT * 100}')
    if changed == body:  # Stripe formatted it otherwise: any change breaks the signature
        changed = body + " "
    status, answer = await deliver(buyer, changed, signature)
    ok = status == 401 and await buyer.balance() == state["balance"]
    return ok, f"HTTP {status} {answer.strip()}"


async def restart(buyer: Buyer, keys: Keys, args: argparse.Namespace, state: State) -> Verdict:
    start = [args.cli, "--start", *([] if args.real_stripe else ["--sandbox"])]
    for command in ([args.cli, "--stop"], start):
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            return False, f"{' '.join(command[1:])}: {done.stderr.strip()}"
    kept = await buyer.balance()
    return kept == state["balance"], f"balance {state['balance']} -> {kept}"


def _cents(shown: str) -> int:
    number = shown.split()[0].replace(",", "")
    whole, _, fraction = number.partition(".")
    return int(whole) * 100 + int(fraction or 0)


def keys_for(args: argparse.Namespace) -> Keys:
    """The local sandbox's generated keys, or real Stripe test keys from this shell."""
    if args.real_stripe:
        try:
            return Keys(
                os.environ["STRIPE_SANDBOX_SECRET_KEY"],
                os.environ["STRIPE_WEBHOOK_SIGNING_KEY"].split(",")[0].strip(),
                None,
            )
        except KeyError as exc:
            raise SystemExit(f"--real-stripe needs {exc.args[0]} in the environment") from None
    settings = load_settings(os.environ)
    path = keys_path(settings.data_dir)
    if not path.exists():
        raise SystemExit(f"no sandbox keys at {path}: run hero-onboarding --start --sandbox")
    generated = read(path)
    return Keys(
        generated.secret_key.reveal(), generated.webhook_signing_key.reveal(), settings.sandbox_url
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    settings = load_settings(os.environ)
    parser.add_argument("--url", default=settings.public_url, help="the service's public URL")
    parser.add_argument("--address", default=ADDRESS, help="the Mycelium address to log in as")
    parser.add_argument(
        "--real-stripe", action="store_true", help="Stripe test mode, not the sandbox"
    )
    parser.add_argument("--wait", type=float, default=30, help="seconds to wait for the payment")
    parser.add_argument("--no-restart", action="store_true", help="skip the --stop/--start check")
    parser.add_argument("--cli", default=str(Path(sys.executable).parent / "hero-onboarding"))
    args = parser.parse_args()
    if args.real_stripe and args.wait == 30:
        args.wait = 300  # a person pays on Stripe's page
    results = asyncio.run(smoke(args, keys_for(args)))
    passed = sum(ok for _, ok, _ in results)
    print(f"{passed} of {len(results)} checks passed")
    sys.exit(0 if results and all(ok for _, ok, _ in results) else 1)


if __name__ == "__main__":
    main()
