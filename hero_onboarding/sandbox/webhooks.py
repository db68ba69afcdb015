"""Signed webhook delivery with Stripe's semantics: at least once, retried, logged.

Each (event, endpoint) pair is a delivery with its own task. New deliveries wait in a queue
until the state that holds their event is saved (app.py's save releases them): a receiver must
never hear of a payment that a crash could then take back. An attempt POSTs the event signed
as Stripe signs (`Stripe-Signature: t=<now>,v1=<hmac>,v0=<decoy>`, fresh on every attempt);
only a 2xx counts, redirects included as failures. Failures wait `retry_delays_s[n]` before the
next attempt, and the delivery fails for good when the delays run out. Deliveries live in the
sandbox state, so with a state file a restart resumes the retries it owed.

Endpoints come from the config (`--webhook`) and from /v1/webhook_endpoints (`registered`,
read at each publish and attempt, so a change or a deletion applies at once). A registered
endpoint gets only its enabled_events, signed with its own secret, and carries its api_version:
the payload keeps the sandbox's one shape, but `api_version` says what Stripe's would.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import aiohttp

from .config import SandboxConfig, WebhookEndpoint
from .ids import new_id
from .state import Obj, SandboxState

log = logging.getLogger(__name__)

USER_AGENT: Final = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
MAX_IN_FLIGHT: Final = 32
_RESPONSE_PEEK: Final = 1024


def signature_header(payload: str, signing_secrets: list[str], timestamp: int) -> str:
    """Stripe's header: one v1 (HMAC-SHA256 over `t.payload`) per secret, and a decoy v0."""
    signed = f"{timestamp}.{payload}".encode()
    parts = [f"t={timestamp}"]
    for secret in signing_secrets:
        parts.append("v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest())
    parts.append("v0=" + secrets.token_hex(32))
    return ",".join(parts)


class WebhookDispatcher:
    def __init__(
        self,
        config: SandboxConfig,
        state: SandboxState,
        *,
        save: Callable[[], Awaitable[None]],
        clock: Callable[[], float] = time.time,
        registered: Callable[[], Iterable[WebhookEndpoint]] = tuple,
    ) -> None:
        self._config = config
        self._registered = registered
        self._state = state
        self._save = save
        self._clock = clock
        self._endpoints = {endpoint.url: endpoint for endpoint in config.endpoints}
        self._tasks: set[asyncio.Task[None]] = set()
        self._queued: list[Obj] = []
        self._gate = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the HTTP client and resume deliveries a previous run left pending."""
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._config.attempt_timeout_s),
            headers={"User-Agent": USER_AGENT},
        )
        for delivery in self._state.deliveries.values():
            if delivery["status"] == "pending":
                self._spawn(delivery)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    def publish(self, event: Obj) -> int:
        """Queue `event` for every endpoint that wants its type; return how many."""
        wanted = [e for e in self._all_endpoints() if e.wants(event["type"])]
        self._queued.extend(self._new_delivery(event, endpoint) for endpoint in wanted)
        return len(wanted)

    def resend(self, event: Obj, url: str | None = None) -> list[Obj]:
        """A manual resend: one more delivery per endpoint (or the one at `url`)."""
        endpoints = [
            e
            for e in self._all_endpoints()
            if (url is None and e.wants(event["type"])) or e.url == url
        ]
        deliveries = [self._new_delivery(event, endpoint) for endpoint in endpoints]
        event["pending_webhooks"] += len(deliveries)
        self._queued.extend(deliveries)
        return deliveries

    def take_queued(self) -> list[Obj]:
        """Deliveries queued so far; the caller starts them once a save has covered them."""
        queued, self._queued = self._queued, []
        return queued

    def start_deliveries(self, deliveries: list[Obj]) -> None:
        for delivery in deliveries:
            self._spawn(delivery)

    def requeue(self, deliveries: list[Obj]) -> None:
        """A save failed: these go out with the next save that succeeds."""
        self._queued[:0] = deliveries

    @property
    def running(self) -> int:
        """Deliveries under way (waiting for an attempt or making one)."""
        return len(self._tasks)

    def knows(self, url: str) -> bool:
        return any(endpoint.url == url for endpoint in self._all_endpoints())

    def _all_endpoints(self) -> list[WebhookEndpoint]:
        return [*self._endpoints.values(), *self._registered()]

    def _endpoint_of(self, delivery: Obj) -> WebhookEndpoint | None:
        """The delivery's endpoint as it is now: by id if registered, else by URL."""
        endpoint_id = delivery.get("webhook_endpoint")
        if endpoint_id is None:
            return self._endpoints.get(delivery["endpoint"])
        return next((e for e in self._registered() if e.id == endpoint_id), None)

    def _new_delivery(self, event: Obj, endpoint: WebhookEndpoint) -> Obj:
        delivery = {
            "id": new_id("wd_"),
            "event": event["id"],
            "type": event["type"],
            "endpoint": endpoint.url,
            "webhook_endpoint": endpoint.id,
            "status": "pending",
            "created": self._clock(),
            "next_attempt_at": self._clock(),
            "attempts": [],
        }
        self._state.deliveries[delivery["id"]] = delivery
        return delivery

    def _spawn(self, delivery: Obj) -> None:
        task = asyncio.get_running_loop().create_task(self._run(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, delivery: Obj) -> None:
        while delivery["status"] == "pending":
            wait = delivery["next_attempt_at"] - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            self._step(delivery, await self._try(delivery))
            try:
                await self._save()
            except Exception:  # the outcome is kept in memory; the next save writes it
                log.exception("could not save the outcome of delivery %s", delivery["id"])

    async def _try(self, delivery: Obj) -> Obj | None:
        """One attempt, or None when the endpoint or the event is gone."""
        endpoint = self._endpoint_of(delivery)
        event = self._state.events.get(delivery["event"])
        if endpoint is None or event is None:
            return None
        async with self._gate:
            return await self._attempt(endpoint, event)

    def _step(self, delivery: Obj, attempt: Obj | None) -> None:
        event = self._state.events.get(delivery["event"])
        if attempt is None:  # Stripe: no retries to an endpoint deleted since
            self._finish(delivery, "failed", event)
            return
        delivery["attempts"].append(attempt)
        self._log(delivery, attempt)
        failures = len(delivery["attempts"])
        if attempt["ok"]:
            self._finish(delivery, "succeeded", event)
        elif failures > len(self._config.retry_delays_s):
            self._finish(delivery, "failed", event)
        else:
            delivery["next_attempt_at"] = self._clock() + self._config.retry_delays_s[failures - 1]

    @staticmethod
    def _finish(delivery: Obj, status: str, event: Obj | None) -> None:
        delivery["status"] = status
        delivery["next_attempt_at"] = None
        if event is not None and status == "succeeded":
            event["pending_webhooks"] = max(0, event["pending_webhooks"] - 1)

    async def _attempt(self, endpoint: WebhookEndpoint, event: Obj) -> Obj:
        assert self._http is not None
        # The endpoint's version names the payload; non-ASCII goes out as UTF-8, as from Stripe,
        # and the signature covers those bytes.
        body = {**event, "api_version": endpoint.api_version or event["api_version"]}
        payload = json.dumps(body, indent=2, ensure_ascii=False)
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": signature_header(
                payload, [secret.reveal() for secret in endpoint.secrets], timestamp
            ),
        }
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            async with self._http.post(
                endpoint.url, data=payload.encode(), headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                await response.content.read(_RESPONSE_PEEK)
        except TimeoutError:
            error = f"timed out after {self._config.attempt_timeout_s} s"
        except aiohttp.ClientError as exc:
            error = f"{type(exc).__name__}: {exc}"
        return {
            "at": timestamp,
            "status": status,
            "error": error,
            "ok": status is not None and 200 <= status < 300,
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
        }

    def _log(self, delivery: Obj, attempt: Obj) -> None:
        outcome = attempt["error"] or f"HTTP {attempt['status']}"
        number = len(delivery["attempts"])
        if attempt["ok"]:
            log.info(
                "delivered %s %s to %s: %s (attempt %d)",
                delivery["event"], delivery["type"], delivery["endpoint"], outcome, number,
            )  # fmt: skip
        else:
            log.warning(
                "delivery of %s %s to %s failed: %s (attempt %d)",
                delivery["event"], delivery["type"], delivery["endpoint"], outcome, number,
            )  # fmt: skip
