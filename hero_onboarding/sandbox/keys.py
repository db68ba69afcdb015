"""Typed keys for what the sandbox app shares with its handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import jinja2
from aiohttp import web

from .buyer import Buyer
from .config import SandboxConfig
from .engine import Sandbox
from .webhooks import WebhookDispatcher

CONFIG: Final = web.AppKey("sandbox_config", SandboxConfig)
SANDBOX: Final = web.AppKey("sandbox", Sandbox)
BUYER: Final = web.AppKey("sandbox_buyer", Buyer)
DISPATCHER: Final = web.AppKey("sandbox_dispatcher", WebhookDispatcher)
SAVE: Final = web.AppKey[Callable[[], Awaitable[None]]]("sandbox_save")  # no class: subscript
POKE: Final = web.AppKey[Callable[[], None]]("sandbox_poke")
TEMPLATES: Final = web.AppKey("sandbox_templates", jinja2.Environment)
