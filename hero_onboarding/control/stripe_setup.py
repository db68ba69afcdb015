"""`hero-onboarding stripe-setup`: make the account's webhook endpoint what this service needs.

The endpoint is `<public_url>/webhooks/stripe`, subscribed to exactly HANDLED_EVENT_TYPES and
rendering events in API_VERSION (payments/stripe_api.py). The command is idempotent: it finds
the endpoint by URL (every page of the list), changes only what differs, and says so when
nothing does. Stripe cannot change an existing endpoint's api_version, so a mismatch is
reported with the way out (`--recreate`: delete it, create it anew, with a new secret).

A new endpoint's signing secret is printed once, to stdout only, with where to store it; never
to stderr, logs or error messages. Errors are one line and an exit code, as everywhere in the
CLI: bad settings, keys or URLs 2; Stripe refusing or unreachable 1.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final
from urllib.parse import urlsplit

import click
import stripe

from ..config import ConfigError, Settings, _is_loopback_host
from ..payments.stripe_api import API_VERSION, HANDLED_EVENT_TYPES
from ..primitives import Secret
from .errors import CommandFailed
from .secrets import SECRET_KEY, WEBHOOK_SIGNING_KEY, SecretLookup, SecretsError

WEBHOOK_PATH: Final = "/webhooks/stripe"
DESCRIPTION: Final = "hero-onboarding: credits sold through Checkout (set by stripe-setup)"
MAX_NETWORK_RETRIES: Final = 2
PAGE_SIZE: Final = 100
_TEST_PREFIXES: Final = ("sk_test_", "rk_test_")
_LIVE_PREFIXES: Final = ("sk_live_", "rk_live_")
# Anything shaped like a Stripe key or signing secret, scrubbed from what Stripe said.
_KEYLIKE: Final = re.compile(r"\b(?:(?:sk|rk|pk)_(?:test|live)|whsec)_[A-Za-z0-9_*]*")

Endpoint = dict[str, Any]


class Action(Enum):
    CREATE = "create"
    UPDATE = "update"
    NOTHING = "nothing"
    RECREATE = "recreate"
    VERSION_MISMATCH = "version mismatch"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class Wanted:
    """The endpoint this installation needs."""

    url: str
    events: tuple[str, ...] = HANDLED_EVENT_TYPES
    api_version: str = API_VERSION
    description: str = DESCRIPTION

    def update_params(self) -> dict[str, Any]:
        return {"enabled_events": list(self.events), "description": self.description}

    def create_params(self) -> dict[str, Any]:
        return {"url": self.url, "api_version": self.api_version, **self.update_params()}


@dataclass(frozen=True)
class Plan:
    """What to do about the endpoints found at the wanted URL, and why."""

    action: Action
    existing: tuple[Endpoint, ...] = ()
    changes: tuple[str, ...] = ()


def wanted_endpoint(settings: Settings) -> Wanted:
    return Wanted(url=settings.public_url + WEBHOOK_PATH)


def key_is_live(key: Secret) -> bool:
    """sk_live_/rk_live_ -> True, sk_test_/rk_test_ -> False; anything else is refused."""
    value = key.reveal()
    if value.startswith(_LIVE_PREFIXES):
        return True
    if value.startswith(_TEST_PREFIXES):
        return False
    raise SecretsError(
        f"{SECRET_KEY} is not a Stripe secret key (it must start with sk_test_ or sk_live_, "
        "or rk_test_/rk_live_ for a restricted key)"
    )


def check_url(url: str, *, live: bool) -> str | None:
    """Refuse what Stripe would never deliver to; return a warning for what it cannot reach."""
    parts = urlsplit(url)
    if live and parts.scheme != "https":
        raise ConfigError(
            f"--public-url: {url} is not https://, and Stripe delivers live events only over "
            "HTTPS: give the https:// URL the service is publicly reached at"
        )
    if _is_loopback_host(parts.hostname or ""):
        return (
            f"{url} is on this machine: right for the local sandbox, but a real Stripe account "
            "cannot deliver there; for a laptop use `stripe listen` (docs/stripe-test-mode.md)"
        )
    return None


def plan(found: list[Endpoint], wanted: Wanted, *, recreate: bool) -> Plan:
    """Decide from the endpoints registered at the wanted URL (pure: no calls to Stripe)."""
    existing = tuple(found)
    if not existing:
        return Plan(Action.CREATE)
    if recreate:
        return Plan(Action.RECREATE, existing)
    if len(existing) > 1:
        return Plan(Action.AMBIGUOUS, existing)
    endpoint = existing[0]
    if endpoint.get("api_version") != wanted.api_version:
        return Plan(Action.VERSION_MISMATCH, existing)
    changes = _differences(endpoint, wanted)
    return Plan(Action.UPDATE if changes else Action.NOTHING, existing, changes)


def _differences(endpoint: Endpoint, wanted: Wanted) -> tuple[str, ...]:
    changes: list[str] = []
    have = list(endpoint.get("enabled_events") or [])
    if sorted(have) != sorted(wanted.events):
        added = [e for e in wanted.events if e not in have]
        dropped = [e for e in have if e not in wanted.events]
        moves = [f"add {', '.join(added)}" if added else "", f"drop {', '.join(dropped)}"]
        changes.append("enabled_events: " + ", and ".join(m for m in moves if m != "drop "))
    if endpoint.get("description") != wanted.description:
        changes.append("description")
    if endpoint.get("status") != "enabled":
        changes.append(f"status {endpoint.get('status')} -> enabled")
    return tuple(changes)


class StripeEndpoints:
    """The account's webhook endpoints through the SDK, pinned to this service's API version."""

    def __init__(self, key: Secret, *, api_base: str | None, timeout_s: float) -> None:
        self._client = stripe.StripeClient(
            key.reveal(),
            stripe_version=API_VERSION,
            base_addresses={"api": api_base} if api_base else None,
            http_client=stripe.new_default_http_client(timeout=timeout_s),
            max_network_retries=MAX_NETWORK_RETRIES,
        )
        self._service = self._client.v1.webhook_endpoints

    def at_url(self, url: str) -> list[Endpoint]:
        """Every endpoint registered at `url`, all pages read."""
        page = self._service.list({"limit": PAGE_SIZE})
        return [e.to_dict() for e in page.auto_paging_iter() if e.url == url]

    def create(self, wanted: Wanted) -> Endpoint:
        return self._service.create(wanted.create_params()).to_dict()  # type: ignore[arg-type]

    def update(self, endpoint_id: str, wanted: Wanted) -> Endpoint:
        params = {**wanted.update_params(), "disabled": False}
        return self._service.update(endpoint_id, params).to_dict()  # type: ignore[arg-type]

    def delete(self, endpoint_id: str) -> None:
        self._service.delete(endpoint_id)


def run(
    settings: Settings,
    lookup: SecretLookup,
    *,
    dry_run: bool,
    recreate: bool,
    echo: Callable[[str], None] = click.echo,
    warn: Callable[[str], None] = lambda line: click.echo(line, err=True),
) -> None:
    """The whole command; raises ConfigError/SecretsError (exit 2) or CommandFailed (exit 1)."""
    key = lookup.get(SECRET_KEY)
    if key is None:
        raise lookup.missing(SECRET_KEY)
    live = key_is_live(key)
    wanted = wanted_endpoint(settings)
    if (warning := check_url(wanted.url, live=live)) is not None:
        warn(f"hero-onboarding: warning: {warning}")
    stripe_at = settings.stripe_api_base or "Stripe"
    endpoints = StripeEndpoints(
        key, api_base=settings.stripe_api_base, timeout_s=settings.provider_timeout_s
    )
    with _asking(stripe_at):
        decided = plan(endpoints.at_url(wanted.url), wanted, recreate=recreate)
    mode = "live" if live else "test"
    ids = ", ".join(e["id"] for e in decided.existing)
    if decided.action is Action.AMBIGUOUS:
        raise CommandFailed(
            f"{len(decided.existing)} webhook endpoints are registered at {wanted.url} ({ids}): "
            "each delivery would come several times; run again with --recreate to replace them "
            "with one"
        )
    if decided.action is Action.VERSION_MISMATCH:
        version = decided.existing[0].get("api_version") or "the account's default version"
        raise CommandFailed(
            f"webhook endpoint {ids} at {wanted.url} renders events in {version}, this service "
            f"reads {wanted.api_version}, and Stripe cannot change an endpoint's API version: "
            "run again with --recreate (it deletes the endpoint and creates a new one, with a "
            "new signing secret to store)"
        )
    if decided.action is Action.NOTHING:
        echo(f"webhook endpoint {ids} at {wanted.url} is up to date ({mode} mode); nothing changed")
        return
    if dry_run:
        echo(_would(decided, wanted, mode))
        return
    with _asking(stripe_at):
        if decided.action is Action.UPDATE:
            endpoints.update(decided.existing[0]["id"], wanted)
            echo(f"updated webhook endpoint {ids} at {wanted.url}: {'; '.join(decided.changes)}")
            return
        for endpoint in decided.existing:  # RECREATE
            endpoints.delete(endpoint["id"])
            echo(f"deleted webhook endpoint {endpoint['id']} at {wanted.url}")
        created = endpoints.create(wanted)
    echo(
        f"created webhook endpoint {created['id']} at {wanted.url} ({mode} mode, API version "
        f"{created.get('api_version')}, {len(created['enabled_events'])} event types)"
    )
    echo(f"signing secret: {created['secret']}")
    echo(
        f"store it now, it is shown only this once: as the hero_proc secret {WEBHOOK_SIGNING_KEY} "
        f"(or the {WEBHOOK_SIGNING_KEY} environment variable of the server), then restart it"
    )


def _would(decided: Plan, wanted: Wanted, mode: str) -> str:
    ids = ", ".join(e["id"] for e in decided.existing)
    if decided.action is Action.CREATE:
        what = f"create a webhook endpoint at {wanted.url}"
    elif decided.action is Action.UPDATE:
        what = f"update webhook endpoint {ids} at {wanted.url}: {'; '.join(decided.changes)}"
    else:
        what = f"delete {ids} and create a new webhook endpoint at {wanted.url}"
    return (
        f"dry run ({mode} mode): would {what} (API version {wanted.api_version}, "
        f"{len(wanted.events)} event types: {','.join(wanted.events)}); nothing changed"
    )


@contextmanager
def _asking(where: str) -> Iterator[None]:
    """Stripe's failures as one line: status, code, param, and Stripe's words minus anything
    shaped like a key. A refused key is a setup error (exit 2), the rest exit 1."""
    try:
        yield
    except stripe.AuthenticationError as exc:
        raise SecretsError(f"{where} refused {SECRET_KEY} ({_details(exc)})") from None
    except stripe.PermissionError as exc:
        raise SecretsError(
            f"{where} refused {SECRET_KEY} ({_details(exc)}): a restricted key needs write "
            "access to webhook endpoints"
        ) from None
    except stripe.APIConnectionError as exc:
        raise CommandFailed(
            f"could not reach {where}: {type(exc).__name__}; run the command again, it picks up "
            "where this one stopped"
        ) from None
    except stripe.StripeError as exc:
        raise CommandFailed(f"{where} refused the request ({_details(exc)})") from None


def _details(exc: stripe.StripeError) -> str:
    parts = [f"HTTP {exc.http_status}" if exc.http_status else type(exc).__name__]
    for name in ("code", "param"):
        if isinstance(value := getattr(exc, name, None), str):
            parts.append(f"{name} {value}")
    message = getattr(exc, "user_message", None) or ""
    if isinstance(message, str) and message:
        parts.append(_KEYLIKE.sub("***", " ".join(message.split()))[:300])
    if isinstance(exc.request_id, str):
        parts.append(f"request {exc.request_id}")
    return ", ".join(parts)
