"""The public web daemon: pages, login, payments, provider webhooks, health."""

from .app import create_app

__all__ = ["create_app"]
