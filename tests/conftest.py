"""Shared fixtures: settings in a temp home, a real Store on a real file, the public app."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import apsw
import pytest
from aiohttp.test_utils import TestClient

from hero_onboarding.config import Secret, Settings, load_settings
from hero_onboarding.daemon import create_app
from hero_onboarding.payments.stripe_provider import StripeWebhooks
from hero_onboarding.store import Store, balances, ledger, users
from hero_onboarding.store.users import User

SIGNING_SECRET = "whsec_test_" + "a1" * 16
OTHER_SECRET = "whsec_test_" + "b2" * 16


@pytest.fixture(autouse=True)
def ledger_invariant(tmp_path: Path) -> Iterator[None]:
    """After every test: in every database it wrote, each balance equals the sum of its events."""
    yield
    for db in tmp_path.rglob("onboarding.db"):
        conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            has_ledger = conn.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'payment_events'"
            ).get
            if has_ledger:
                assert ledger.verify_ledger(conn) == [], f"ledger invariant broken in {db}"
        finally:
            conn.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({"HOME": str(tmp_path)}, {"data_dir": str(tmp_path / "data")})


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = await Store.open(
        settings.db_path,
        busy_timeout_ms=settings.db_busy_timeout_ms,
        write_timeout_s=settings.write_timeout_s,
    )
    yield opened
    await opened.close()


async def register(store: Store, address: str, currency: str = "usd") -> User:
    return await store.write(
        partial(users.register, address=address, currency=currency, now=int(time.time()))
    )


@pytest.fixture
async def user(store: Store) -> User:
    return await register(store, "4a1:2b3c:4d5e:6f70:8192:a3b4:c5d6:e7f8")


async def balance_of(store: Store, sid: str) -> int:
    found = await store.read(lambda conn: balances.get(conn, sid))
    assert found is not None
    return found.credit_balance


@pytest.fixture
def webhooks() -> StripeWebhooks:
    return StripeWebhooks([Secret(SIGNING_SECRET)], tolerance_s=300)


@pytest.fixture
async def client(
    aiohttp_client, settings: Settings, store: Store, webhooks: StripeWebhooks
) -> TestClient:
    return await aiohttp_client(create_app(settings, store, webhooks))
