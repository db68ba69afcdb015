"""What one sandbox instance is: where it listens, whom it tells, how hard it retries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..config import Secret

DEFAULT_PORT: Final = 12111  # stripe-mock's port, so tools that expect a local Stripe find it
SERVICE_NAME: Final = "hero_onboarding_sandbox"


@dataclass(frozen=True)
class WebhookEndpoint:
    """A registered endpoint: Stripe's `url`, `enabled_events` and its `whsec_` secret(s).

    Several secrets model Stripe's roll window, when deliveries carry one v1 per secret.
    Endpoints created through /v1/webhook_endpoints carry their `we_` id and the api_version
    their events are rendered in (None: the account's default, the sandbox's version).
    """

    url: str
    secrets: tuple[Secret, ...]
    enabled_events: tuple[str, ...] = ("*",)
    id: str | None = None
    api_version: str | None = None

    def wants(self, event_type: str) -> bool:
        return any(
            pattern == "*"
            or pattern == event_type
            or (pattern.endswith(".*") and event_type.startswith(pattern[:-1]))
            for pattern in self.enabled_events
        )


@dataclass(frozen=True)
class SandboxConfig:
    """Built by the CLI (or a test) and handed down; the sandbox reads no env vars or files.

    retry_delays_s: waits between delivery attempts after a failure; its length bounds the
    retries (Stripe's test mode retries 3 times over a few hours; a dev sandbox wants faster).
    async_settle_s: when set, delayed (bank) payments settle on their own after this long;
    otherwise only `POST /_sandbox/checkout/sessions/{id}/settle` settles them.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    public_url: str | None = None
    api_key: Secret | None = None
    endpoints: tuple[WebhookEndpoint, ...] = ()
    retry_delays_s: tuple[float, ...] = (1.0, 10.0, 60.0, 600.0, 3600.0)
    attempt_timeout_s: float = 10.0
    async_settle_s: float | None = None
    state_file: Path | None = None
    idempotency_ttl_s: int = 24 * 3600
    account_name: str = "Sandbox account"  # the business name the hosted page shows

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")
