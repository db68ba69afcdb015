"""Typed keys for what the app factory hands its handlers (no module-level state)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from aiohttp import web

from ..config import Settings
from ..mycelium.messages import MessageSender
from ..payments.base import PaymentProvider, WebhookParser
from ..store import Store
from .keyed_locks import KeyedLocks
from .metrics import Metrics
from .recent import RecentAsks

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
# Each provider's parser by its name: POST /webhooks/{name} (Stripe's is /webhooks/stripe).
WEBHOOK_PARSERS = web.AppKey[Mapping[str, WebhookParser]]("webhook_parsers")
CLOCK = web.AppKey[Callable[[], float]]("clock")  # a Callable is no class: subscript the key
MESSENGER = web.AppKey("messenger", MessageSender)
LOGIN_KEY = web.AppKey("login_key", bytes)  # the server's x25519 private key for key proofs
LOGIN_PUBLIC_KEY = web.AppKey("login_public_key", str)  # its public half, hex, for the pages
CHECKOUTS = web.AppKey("checkouts", PaymentProvider)  # opens hosted checkouts, reads them back
METRICS = web.AppKey("metrics", Metrics)
RECENT_ASKS = web.AppKey("recent_asks", RecentAsks)  # throttles asking the provider
CHECKOUT_LOCKS = web.AppKey("checkout_locks", KeyedLocks)  # one checkout opening per user
