"""Resolving Stripe credentials for a daemon at boot: hero_proc's secret store, then the env.

hero_proc absent (no socket, nobody listening) means the environment, quietly; hero_proc
answering with an error means one warning, then the environment. An empty `HERO_PROC_SOCKET`
turns hero_proc off (sandbox mode does, so its generated test keys are never shadowed by real
ones). Values are wrapped in `Secret` at once, so they cannot reach a log line or an error
message by accident; messages name secrets and places, never values.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..config import ProviderName, Secrets
from ..errors import SetupError
from ..primitives import Secret
from ..rpc.hero_proc import (
    SOCKET_ENV,
    HeroProcClient,
    HeroProcError,
    HeroProcUnavailable,
    hero_proc_socket,
)
from . import sandbox_keys
from .sandbox_keys import KEYS_FILE_ENV

log = logging.getLogger(__name__)

WEBHOOK_SIGNING_KEY: Final = "STRIPE_WEBHOOK_SIGNING_KEY"
SECRET_KEY: Final = "STRIPE_SANDBOX_SECRET_KEY"  # noqa: S105 (a name, not a value)
PUBLISHABLE_KEY: Final = "STRIPE_SANDBOX_PUBLISHABLE_KEY"
ALL_SECRETS: Final = (WEBHOOK_SIGNING_KEY, SECRET_KEY, PUBLISHABLE_KEY)
HERO_PROC_TIMEOUT_S: Final = 5.0
ENVIRONMENT: Final = "environment"
HERO_PROC: Final = "hero_proc"
SANDBOX_KEYS: Final = "sandbox keys file"


class SecretsError(SetupError, RuntimeError):
    """A secret is missing or malformed. The message names it, never its value."""


@dataclass(frozen=True)
class SecretLookup:
    """What was found where; `looked_in` says every place asked, for the error message."""

    found: Mapping[str, tuple[Secret, str]]  # name -> (value, "hero_proc" | "environment")
    looked_in: str

    @classmethod
    def from_env(cls, env: Mapping[str, str], names: Sequence[str] = ALL_SECRETS) -> SecretLookup:
        return cls(_from_env(env, names, already={}), ENVIRONMENT)

    def get(self, name: str) -> Secret | None:
        entry = self.found.get(name)
        return entry[0] if entry else None

    def source(self, name: str) -> str | None:
        entry = self.found.get(name)
        return entry[1] if entry else None

    def missing(self, name: str) -> SecretsError:
        return SecretsError(f"{name} is not set (looked in: {self.looked_in})")


def hero_proc_at(env: Mapping[str, str]) -> Path | None:
    """hero_proc's socket, or None when an empty HERO_PROC_SOCKET turns it off."""
    return hero_proc_socket(env) if env.get(SOCKET_ENV) != "" else None


def sandbox_keys_lookup(env: Mapping[str, str], *, sandbox_mode: bool) -> SecretLookup | None:
    """The generated test keys, for daemons `--start --sandbox` runs (None for any other).

    Test keys serve only the sandbox: the variable outside sandbox mode is an error, never a
    quiet way past the real keys.
    """
    path = env.get(KEYS_FILE_ENV)
    if not path:
        return None
    if not sandbox_mode:
        raise SecretsError(
            f"{KEYS_FILE_ENV} is set, but sandbox keys serve only --mode=sandbox: unset it"
        )
    try:
        keys = sandbox_keys.read(Path(path))  # CommandFailed names the file when unreadable
    except FileNotFoundError:
        raise SecretsError(
            f"the sandbox keys file {path} is gone; --restart --sandbox makes new ones"
        ) from None
    found = {
        WEBHOOK_SIGNING_KEY: (keys.webhook_signing_key, SANDBOX_KEYS),
        SECRET_KEY: (keys.secret_key, SANDBOX_KEYS),
    }
    return SecretLookup(found, f"{SANDBOX_KEYS} {path}")


async def look_up(
    env: Mapping[str, str], names: Sequence[str] = ALL_SECRETS, *, sandbox_mode: bool = False
) -> SecretLookup:
    """Ask hero_proc for each of `names`, then take the rest from the environment.

    The daemons of `--start --sandbox` take the generated test keys, and nothing else.
    """
    if (generated := sandbox_keys_lookup(env, sandbox_mode=sandbox_mode)) is not None:
        return generated
    socket = hero_proc_at(env)
    if socket is None:
        return SecretLookup(_from_env(env, names, {}), f"{ENVIRONMENT} (hero_proc turned off)")
    from_hero_proc: dict[str, str] = {}
    where = f"{HERO_PROC} at {socket}"
    try:
        async with HeroProcClient(socket, timeout_s=HERO_PROC_TIMEOUT_S) as hero_proc:
            for name in names:
                value = await hero_proc.secret_get(name)
                if value and value.strip():
                    from_hero_proc[name] = value.strip()
    except HeroProcUnavailable:
        where += " (not running)"
        from_hero_proc = {}
    except HeroProcError as exc:
        log.warning("hero_proc at %s did not give secrets (%s); using the environment", socket, exc)
        where += " (failed)"
        from_hero_proc = {}
    found = {name: (Secret(value), HERO_PROC) for name, value in from_hero_proc.items()}
    return SecretLookup(_from_env(env, names, found), f"{where}, {ENVIRONMENT}")


def resolve(
    env: Mapping[str, str], names: Sequence[str] = ALL_SECRETS, *, sandbox_mode: bool
) -> SecretLookup:
    """`look_up` for the CLI, before any event loop runs."""
    return asyncio.run(look_up(env, names, sandbox_mode=sandbox_mode))


def _from_env(
    env: Mapping[str, str], names: Sequence[str], already: dict[str, tuple[Secret, str]]
) -> dict[str, tuple[Secret, str]]:
    found = dict(already)
    for name in names:
        value = env.get(name, "").strip()
        if name not in found and value:
            found[name] = (Secret(value), ENVIRONMENT)
    return found


def server_secrets(lookup: SecretLookup, *, provider: ProviderName) -> Secrets:
    """The secrets the public daemon needs for `provider`.

    With Stripe, the webhook signing key and the API secret key are both required. The stub
    provider needs neither; a signing key given anyway still turns the webhook endpoint on.
    """
    uses_stripe = provider == ProviderName.STRIPE
    secret_key = lookup.get(SECRET_KEY)
    if uses_stripe and secret_key is None:
        raise SecretsError(f"{lookup.missing(SECRET_KEY)}; --provider=stripe needs it")
    has_signing_key = lookup.get(WEBHOOK_SIGNING_KEY) is not None
    return Secrets(
        webhook_signing_keys=(
            webhook_signing_keys(lookup) if uses_stripe or has_signing_key else ()
        ),
        stripe_secret_key=secret_key,
        stripe_publishable_key=lookup.get(PUBLISHABLE_KEY),
    )


def webhook_signing_keys(lookup: SecretLookup) -> tuple[Secret, ...]:
    """STRIPE_WEBHOOK_SIGNING_KEY as one or more `whsec_` secrets; missing or malformed: error.

    It may hold several comma-separated secrets, so one can be rolled without dropping
    deliveries signed with the other.
    """
    raw = lookup.get(WEBHOOK_SIGNING_KEY)
    if raw is None:
        raise lookup.missing(WEBHOOK_SIGNING_KEY)
    entries = [entry.strip() for entry in raw.reveal().split(",")]
    for position, entry in enumerate(entries, start=1):
        if not entry.startswith("whsec_") or len(entry) <= len("whsec_"):
            where = f"entry {position} of {len(entries)}" if len(entries) > 1 else "its value"
            raise SecretsError(
                f"{WEBHOOK_SIGNING_KEY}: {where} is not a Stripe webhook signing secret "
                "(they start with whsec_)"
            )
    return tuple(Secret(entry) for entry in entries)
