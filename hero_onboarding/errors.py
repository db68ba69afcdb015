"""The package's one exception base, and the few branches of its tree (see docs/errors.md).

Every exception class defined in hero_onboarding derives from `HeroOnboardingError`, so a
caller can tell ours from a library's or a bug, and each says in its own `class` line what it
means to whoever it reaches:

- `exit_code`: how `hero-onboarding` exits when it reaches `cli.main` (which prints the message
  as one line). None: it is never meant to get that far, so reaching it is a bug, reported as
  "unexpected error" with exit 1.
- `http_status`: what the public daemon (or a sandbox) answers when it is raised under a
  request.
- `rpc_code`: the JSON-RPC error code the admin daemon answers it with.

They are given as class keywords (`class StoreError(UnavailableError, RuntimeError,
http_status=503, rpc_code=-32015)`), so a new error needs no edit anywhere else: `cli.main`
maps by `exit_code`. A class without a keyword inherits its parent's value. Errors whose code
varies per instance (`RpcFault.code`, `StripeApiError.status`, ...) carry it on the instance;
their class attribute stays None.

A leaf module: it imports nothing from the package, so every layer (config and store at the
bottom included) can import it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2


class HeroOnboardingError(Exception):
    """Raised by this package on purpose; the message is one line, safe to show its caller."""

    exit_code: ClassVar[int | None] = None
    http_status: ClassVar[int | None] = None
    rpc_code: ClassVar[int | None] = None

    def __init_subclass__(
        cls,
        *,
        exit_code: int | None = None,
        http_status: int | None = None,
        rpc_code: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in (
            ("exit_code", exit_code),
            ("http_status", http_status),
            ("rpc_code", rpc_code),
        ):
            if value is not None:
                setattr(cls, name, value)


class SetupError(HeroOnboardingError, exit_code=EXIT_USAGE):
    """The installation is not set up to do this: a setting, a secret, a daemon to talk to.
    Fix the setup and run the command again (exit 2)."""


class CommandError(HeroOnboardingError, exit_code=EXIT_FAILURE):
    """The command ran and failed: a daemon could not start, hero_proc refused (exit 1)."""


class InputError(HeroOnboardingError):
    """What a person or a client sent is refused; the message is written for them (4xx)."""


class UnavailableError(HeroOnboardingError):
    """Something we depend on cannot answer now (the database, the payment provider, the
    Mycelium node, a reconciliation run holding the lease); the same request may work later."""


class ErrorAnswer(HeroOnboardingError):
    """An error answer with its code on the instance (`.code`, `.status`): one we send as is
    (a JSON-RPC fault, a Stripe-shaped API error, a hosted-page error) or one we were sent."""
