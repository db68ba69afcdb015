"""The provider set both daemons are built with: the one place that names concrete providers.

Each provider's module has a `parts(settings, secrets) -> ProviderParts` function; REGISTRY
maps every ProviderName to it. Adding a provider is its module in payments/, a ProviderName
member and one line here (tests/test_providers.py checks that no name lacks its entry).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from ..config import ProviderName, Secrets, Settings
from ..primitives import StartupError
from . import stripe_provider, stub
from .base import Closable, PaymentProvider, ProviderParts, Reconciler, WebhookParser

log = logging.getLogger(__name__)

PartsBuilder = Callable[[Settings, Secrets], ProviderParts]

REGISTRY: Final[Mapping[ProviderName, PartsBuilder]] = MappingProxyType({
    ProviderName.STRIPE: stripe_provider.parts,
    ProviderName.STUB: stub.parts,
})  # fmt: skip


@dataclass(frozen=True)
class Providers:
    """What one daemon pays with, built once at its boot by `build_providers`.

    Every registered provider whose credentials are there contributes: its webhooks are
    served even while --provider names another (Stripe's refunds of earlier payments still
    arrive), and reconciliation may run against it. The daemon that built it closes it.
    """

    selected: ProviderName
    parts: Mapping[ProviderName, ProviderParts]

    @property
    def checkouts(self) -> PaymentProvider:
        """The provider --provider names; StartupError when its credentials are missing."""
        chosen = self.parts[self.selected]
        if chosen.checkouts is None:
            raise StartupError(chosen.missing or f"--provider={self.selected} cannot be built")
        return chosen.checkouts

    @property
    def webhooks(self) -> tuple[WebhookParser, ...]:
        """Every webhook parser, each served at /webhooks/{its name}."""
        return tuple(p.webhooks for p in self.parts.values() if p.webhooks is not None)

    @property
    def reconciler(self) -> Reconciler | None:
        """The selected provider's reconciler, else the first other one there is (an operator
        may still reconcile the Stripe payments made before a switch to the stub)."""
        ordered = [self.parts[self.selected], *self.parts.values()]
        return next((p.reconciler for p in ordered if p.reconciler is not None), None)

    async def close(self) -> None:
        """Close every client the parts own, each once; one failing does not stop the rest."""
        owned: dict[int, Closable] = {}
        for part in self.parts.values():
            owned.update((id(thing), thing) for thing in part.owned)
        results = await asyncio.gather(
            *(thing.close() for thing in owned.values()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, Exception):
                log.warning("closing a payment provider failed: %s", result)


def build_providers(
    settings: Settings,
    secrets: Secrets,
    registry: Mapping[ProviderName, PartsBuilder] = REGISTRY,
) -> Providers:
    """Every registered provider's parts, from what Settings and Secrets say.

    Nothing here touches the network (clients connect on first use), so it cannot fail
    halfway with something open. A --provider without an entry is a StartupError.
    """
    if settings.provider not in registry:
        raise StartupError(f"--provider={settings.provider} is not registered in payments/")
    built = {name: parts(settings, secrets) for name, parts in registry.items()}
    return Providers(settings.provider, MappingProxyType(built))
