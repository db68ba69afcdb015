"""`hero-onboarding --restart` through the real CLI and real processes, under both backends.

The README promises it keeps sandbox mode and the backend the service ran with; a restart
must also keep the data: a user and a balance written before it are there after it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hero_onboarding.store import users
from hero_onboarding.store.db import connect
from tests.admin_kit import short_socket_dir
from tests.control_kit import Install
from tests.fake_hero_proc import running_fake_hero_proc

pytestmark = pytest.mark.process  # every test here starts real processes

ADDRESS = "4a1:2b3c:4d5e:6f70:8192:a3b4:c5d6:e7f8"
CREDIT = 1234


@pytest.fixture(params=["builtin", "hero_proc"])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend `--start` picks on its own (auto) in this installation."""
    return str(request.param)


@pytest.fixture
def install(backend: str, tmp_path: Path) -> Iterator[Install]:
    """An installation; for hero_proc, with a (fake) hero_proc answering, so `auto` picks it."""
    if backend == "builtin":
        installed = Install.in_tmp(tmp_path)
        yield installed
        installed.stop_all()
        return
    socket = short_socket_dir() / "rpc.sock"
    with running_fake_hero_proc(socket, log_dir=tmp_path / "hero_proc"):
        installed = Install.in_tmp(tmp_path, HERO_PROC_SOCKET=str(socket))
        yield installed
        installed.stop_all()


def credit_a_user(install: Install) -> str:
    """A user in the database, credited through the running admin daemon; its sid."""
    conn = connect(install.data_dir / "onboarding.db", busy_timeout_ms=5000)
    try:
        user = users.register(conn, ADDRESS, currency="usd", now=int(time.time()))
    finally:
        conn.close()
    params = {"sid": user.sid, "amount": CREDIT, "reason": "test", "idempotency_key": "restart-1"}
    adjusted = install.cli("rpc", "billing_adjust", json.dumps(params))
    assert adjusted.returncode == 0, adjusted.stderr
    return user.sid


def balance_of(install: Install, sid: str) -> int:
    answer = install.cli("rpc", "billing_get", json.dumps({"sid": sid}))
    assert answer.returncode == 0, answer.stderr
    return int(json.loads(answer.stdout)["balance"])


def test_restart_keeps_sandbox_mode_the_backend_and_the_data(
    install: Install, backend: str
) -> None:
    started = install.cli("--start", "--sandbox")
    assert started.returncode == 0, started.stderr
    before = install.status()
    assert before["sandbox"]
    assert before["healthy"]
    assert before["backend"] == backend
    sid = credit_a_user(install)
    assert balance_of(install, sid) == CREDIT

    restarted = install.cli("--restart")  # no --sandbox, no --backend: as it ran
    assert restarted.returncode == 0, restarted.stderr
    assert f"running under {backend}" in restarted.stdout
    assert "sandbox mode" in restarted.stdout

    after = install.status()
    assert after["backend"] == backend
    assert after["sandbox"]
    assert after["healthy"]
    old = {d["name"]: d["pid"] for d in before["daemons"]}
    new = {d["name"]: d["pid"] for d in after["daemons"]}
    assert set(new) == set(old) == {"sandbox", "server", "admin"}
    assert all(new[name] and new[name] != old[name] for name in old)  # really restarted
    assert balance_of(install, sid) == CREDIT


def test_restart_with_nothing_running_starts_as_start_would(install: Install, backend: str) -> None:
    """Nothing ran, so there is nothing to keep: no sandbox daemon unless asked for, and the
    backend `auto` picks (the stub provider needs no Stripe secrets)."""
    restarted = install.cli(
        "--restart", HERO_ONBOARDING_MODE="sandbox", HERO_ONBOARDING_PROVIDER="stub"
    )
    assert restarted.returncode == 0, restarted.stderr
    status = install.status()
    assert status["healthy"]
    assert status["backend"] == backend
    assert not status["sandbox"]
    assert {d["name"] for d in status["daemons"]} == {"server", "admin"}
