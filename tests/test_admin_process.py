"""The real `hero-onboarding admin` daemon and `hero-onboarding rpc` calling it."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.admin_kit import short_socket_dir
from tests.processes import CLI, run_cli
from tests.waiting import wait_until

pytestmark = pytest.mark.process  # every test here starts real processes

E = "hero-onboarding: error: "


@pytest.fixture
def admin_daemon(tmp_path):
    sockets = short_socket_dir()
    env = {"HOME": str(tmp_path), "HERO_SOCKET_DIR": str(sockets)}
    log_path = tmp_path / "admin.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [CLI, "admin"], stdout=log, stderr=subprocess.STDOUT, env={**env, "PATH": "/usr/bin"}
        )
    socket_path = sockets / "hero_onboarding_admin" / "rpc.sock"
    try:
        wait_until(
            lambda: process.poll() is not None or run_cli("rpc", "info", env=env).returncode == 0,
            timeout=20,
            what="the admin daemon answers",
        )
        assert process.poll() is None, log_path.read_text()
        yield env, socket_path, process, log_path
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)


def test_rpc_prints_results_and_reports_errors_with_exit_codes(admin_daemon) -> None:
    env, socket_path, process, log_path = admin_daemon
    info = run_cli("rpc", "info", env=env)
    assert info.returncode == 0
    assert json.loads(info.stdout)["service"] == "hero_onboarding_admin"

    missing = run_cli("rpc", "billing_get", '{"sid": "nobody"}', env=env)
    assert missing.returncode == 1
    assert missing.stderr == f"{E}billing_get: no such user (-32004)\n"

    for params, words in (("[1]", "must be a JSON object"), ("{nope", "not JSON")):
        bad = run_cli("rpc", "billing_get", params, env=env)
        assert bad.returncode == 2
        assert words in bad.stderr

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert not socket_path.exists()  # a clean stop leaves no socket behind
    gone = run_cli("rpc", "info", env=env)
    assert gone.returncode == 2
    assert gone.stderr.startswith(f"{E}no admin daemon socket at {socket_path}")
    assert "admin daemon answering on" in log_path.read_text()


def test_a_second_admin_daemon_refuses_to_start(admin_daemon) -> None:
    env, socket_path, _, _ = admin_daemon
    started = time.monotonic()
    second = run_cli("admin", env=env)
    assert second.returncode == 1
    assert second.stderr == f"{E}another daemon is already answering on {socket_path}\n"
    assert time.monotonic() - started < 20
