"""Opening the store as Settings describe it: what both daemons do first at boot."""

from __future__ import annotations

from ..config import Settings
from ..primitives import StartupError
from .database import Store
from .db import StoreError


async def open_store(settings: Settings) -> Store:
    """The database as settings describe it, migrated; a StartupError if it cannot be used."""
    try:
        return await Store.open(
            settings.db_path,
            busy_timeout_ms=settings.db_busy_timeout_ms,
            write_timeout_s=settings.write_timeout_s,
            read_timeout_s=settings.read_timeout_s,
        )
    except StoreError as exc:
        raise StartupError(str(exc)) from exc
