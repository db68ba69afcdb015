"""What one sandbox instance is: where it listens, whom it tells, how hard it retries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..primitives import Secret
from .versions import EMULATED_VERSIONS

DEFAULT_PORT: Final = 12111  # stripe-mock's port, so tools that expect a local Stripe find it
SERVICE_NAME: Final = "hero_onboarding_sandbox"
DEFAULT_RETRY_DELAYS_S: Final = (900.0, 3600.0, 10800.0)


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
    # The version its payloads name in `api_version`; None: the account's (the sandbox's).
    api_version: str | None = None

    def __post_init__(self) -> None:
        if self.api_version is not None and self.api_version not in EMULATED_VERSIONS:
            raise ValueError(
                f"webhook endpoint {self.url}: the sandbox renders API versions "
                f"{', '.join(sorted(EMULATED_VERSIONS))} only, not {self.api_version}"
            )

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
    retries. The default is Stripe's test-mode schedule ("3 retries over a few hours"; Stripe
    does not publish the intervals, so: 15 min, 1 h, 3 h); tests pass a fast one.
    async_settle_s: when set, delayed (bank) payments settle on their own after this long;
    otherwise only `POST /_sandbox/checkout/sessions/{id}/settle` settles them.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    public_url: str | None = None
    api_key: Secret | None = None
    endpoints: tuple[WebhookEndpoint, ...] = ()
    retry_delays_s: tuple[float, ...] = DEFAULT_RETRY_DELAYS_S
    attempt_timeout_s: float = 10.0
    async_settle_s: float | None = None
    state_file: Path | None = None
    idempotency_ttl_s: int = 24 * 3600
    account_name: str = "Sandbox account"  # the business name the hosted page shows

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")
