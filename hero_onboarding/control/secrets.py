"""Resolving Stripe credentials for a daemon at boot.

Only the environment is consulted for now; hero_proc's secret store comes first once the
control issue lands. Values are wrapped in `Secret` at once so they cannot reach a log line
or an error message by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ..config import Secret, Secrets

WEBHOOK_SIGNING_KEY: Final = "STRIPE_WEBHOOK_SIGNING_KEY"
SECRET_KEY: Final = "STRIPE_SANDBOX_SECRET_KEY"  # noqa: S105 (a name, not a value)
PUBLISHABLE_KEY: Final = "STRIPE_SANDBOX_PUBLISHABLE_KEY"
_LOOKED_IN: Final = "looked in: environment"


class SecretsError(RuntimeError):
    """A secret is missing or malformed. The message names it, never its value."""


def secrets_from_env(env: Mapping[str, str], *, provider: str) -> Secrets:
    """Read the Stripe secrets the public daemon needs for `provider`.

    With Stripe, the webhook signing key and the API secret key are both required. The stub
    provider needs neither; a signing key given anyway still turns the webhook endpoint on.
    STRIPE_WEBHOOK_SIGNING_KEY may hold several comma-separated `whsec_` secrets, so one can be
    rolled without dropping deliveries signed with the other.
    """
    uses_stripe = provider == "stripe"
    secret_key = optional_secret(env, SECRET_KEY)
    if uses_stripe and secret_key is None:
        raise SecretsError(f"{SECRET_KEY} is not set ({_LOOKED_IN}); --provider=stripe needs it")
    return Secrets(
        webhook_signing_keys=(
            webhook_signing_keys(env) if uses_stripe or env.get(WEBHOOK_SIGNING_KEY) else ()
        ),
        stripe_secret_key=secret_key,
        stripe_publishable_key=optional_secret(env, PUBLISHABLE_KEY),
    )


def webhook_signing_keys(env: Mapping[str, str]) -> tuple[Secret, ...]:
    """STRIPE_WEBHOOK_SIGNING_KEY as one or more `whsec_` secrets; missing or malformed: error."""
    raw = env.get(WEBHOOK_SIGNING_KEY, "")
    if not raw.strip():
        raise SecretsError(f"{WEBHOOK_SIGNING_KEY} is not set ({_LOOKED_IN})")
    entries = [entry.strip() for entry in raw.split(",")]
    for position, entry in enumerate(entries, start=1):
        if not entry.startswith("whsec_") or len(entry) <= len("whsec_"):
            where = f"entry {position} of {len(entries)}" if len(entries) > 1 else "its value"
            raise SecretsError(
                f"{WEBHOOK_SIGNING_KEY}: {where} is not a Stripe webhook signing secret "
                "(they start with whsec_)"
            )
    return tuple(Secret(entry) for entry in entries)


def optional_secret(env: Mapping[str, str], name: str) -> Secret | None:
    value = env.get(name, "").strip()
    return Secret(value) if value else None
