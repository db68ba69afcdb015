"""`hero-onboarding sandbox`: the local Stripe sandbox's flags, secrets and foreground run.

Signing secrets come from STRIPE_WEBHOOK_SIGNING_KEY, never from a flag: argv is readable by
every user on the machine (`ps`). STRIPE_SANDBOX_SECRET_KEY, when set, is the one API key the
sandbox accepts; otherwise any `sk_test_` key is.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..config import ConfigError, http_url, without_credentials
from ..sandbox.config import DEFAULT_PORT, DEFAULT_RETRY_DELAYS_S, SandboxConfig, WebhookEndpoint
from .foreground import run_until_signalled
from .logs import configure_logging
from .secrets import SECRET_KEY, SecretLookup, sandbox_keys_lookup, webhook_signing_keys

if TYPE_CHECKING:
    _UrlParam = click.ParamType[str]
    _SecondsParam = click.ParamType[tuple[float, ...]]
else:  # ParamType is generic from click 8.4 on, and only for type checkers to subscript
    _UrlParam = _SecondsParam = click.ParamType


class HttpUrl(_UrlParam):
    name = "URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return http_url(str(value))
        except ValueError as exc:
            self.fail(f"{without_credentials(str(value))!r} {exc}", param, ctx)


class Seconds(_SecondsParam):
    """A comma-separated list of non-negative seconds, e.g. `1,10,60`."""

    name = "S[,S...]"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[float, ...]:
        if isinstance(value, tuple):
            return value
        try:
            delays = tuple(float(part) for part in str(value).split(",") if part.strip())
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of seconds", param, ctx)
        if any(not 0 <= delay <= 7 * 86400 for delay in delays):
            self.fail(f"{value!r}: each delay must be between 0 and 604800 seconds", param, ctx)
        return delays


@click.command(name="sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True,
    help="Port to listen on.",
)  # fmt: skip
@click.option(
    "--public-url", type=HttpUrl(), default=None,
    help="Base URL of the hosted pages as browsers reach them [default: http://HOST:PORT].",
)  # fmt: skip
@click.option(
    "--webhook", "webhooks", type=HttpUrl(), multiple=True,
    help="Webhook endpoint URL; repeat for several. Signed with STRIPE_WEBHOOK_SIGNING_KEY.",
)  # fmt: skip
@click.option(
    "--webhook-events", default="*", show_default=True,
    help="Comma-separated event types the endpoints receive (`*` for all, `checkout.session.*`).",
)  # fmt: skip
@click.option(
    "--retry-delays", type=Seconds(), default=",".join(f"{d:g}" for d in DEFAULT_RETRY_DELAYS_S),
    show_default=True,
    help="Seconds to wait before each retry of a failed delivery; their count bounds retries "
    "(default: Stripe's test mode, 3 retries over a few hours; e.g. 0.1,0.1,0.1 for tests).",
)  # fmt: skip
@click.option(
    "--attempt-timeout", type=click.FloatRange(0.1, 300), default=10.0, show_default=True,
    help="Seconds a webhook endpoint has to answer one delivery.",
)  # fmt: skip
@click.option(
    "--async-settle", type=click.FloatRange(0, 7 * 86400), default=None,
    help="Seconds after which bank (ACH) payments settle on their own "
    "[default: only through POST /_sandbox/checkout/sessions/ID/settle].",
)  # fmt: skip
@click.option(
    "--state-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Keep sessions, events and pending deliveries in this file across restarts "
    "[default: memory only].",
)  # fmt: skip
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
    show_default=True,
)  # fmt: skip
def sandbox_command(
    *,
    host: str,
    port: int,
    public_url: str | None,
    webhooks: tuple[str, ...],
    webhook_events: str,
    retry_delays: tuple[float, ...],
    attempt_timeout: float,
    async_settle: float | None,
    state_file: Path | None,
    log_level: str,
) -> None:
    """Run the local Stripe-compatible Checkout sandbox in the foreground.

    Point the SDK at it with base_addresses={"api": "http://HOST:PORT"}. Webhook deliveries are
    signed with STRIPE_WEBHOOK_SIGNING_KEY; STRIPE_SANDBOX_SECRET_KEY, if set, is the only API
    key accepted (otherwise any sk_test_ key is). Stops cleanly on SIGTERM or SIGINT.
    """
    events = tuple(part.strip() for part in webhook_events.split(",") if part.strip())
    if not events:
        raise ConfigError("--webhook-events: give at least one event type, or *")
    # A test tool: its keys are test keys, from `--start --sandbox`'s file or the environment.
    secrets = sandbox_keys_lookup(os.environ, sandbox_mode=True) or SecretLookup.from_env(
        os.environ
    )
    signing = webhook_signing_keys(secrets) if webhooks else ()
    config = SandboxConfig(
        host=host,
        port=port,
        public_url=public_url,
        api_key=secrets.get(SECRET_KEY),
        endpoints=tuple(WebhookEndpoint(url, signing, events) for url in webhooks),
        retry_delays_s=retry_delays,
        attempt_timeout_s=attempt_timeout,
        async_settle_s=async_settle,
        state_file=state_file,
    )
    from ..sandbox.server import serve_sandbox  # here: other commands need none of it

    configure_logging(log_level, "sandbox")
    run_until_signalled(partial(serve_sandbox, config))
