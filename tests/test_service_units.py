"""service/: the systemd units verify, the zinit specs say what we mean, and the daemons really
tell a supervisor READY=1 once they answer and STOPPING=1 on SIGTERM (the units' Type=notify)."""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from hero_onboarding import sd_notify
from hero_onboarding.config import Settings, load_settings
from tests.admin_kit import short_socket_dir
from tests.conftest import SIGNING_SECRET
from tests.processes import CLI, free_port, http_status, run_cli
from tests.sandbox_kit import API_KEY
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
DAEMONS = ("server", "admin")
INSTALLED_VENV = "/opt/hero-onboarding/.venv/bin"  # where the service files expect the project
INSTALLED_CLI = f"{INSTALLED_VENV}/hero-onboarding"
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Settings)}
# What a clean stop may take with default settings: in-flight requests get shutdown_timeout_s,
# then the last commit may wait db_busy_timeout_ms for the other daemon's lock. The supervisor
# must wait longer than that before it sends SIGKILL.
STOP_BUDGET_S = DEFAULTS["shutdown_timeout_s"] + DEFAULTS["db_busy_timeout_ms"] / 1000
ZINIT_KEYS = {"exec", "test", "oneshot", "shutdown_timeout", "after", "signal", "log", "env", "dir"}
STRIPE_ENV = {"STRIPE_WEBHOOK_SIGNING_KEY": SIGNING_SECRET, "STRIPE_SANDBOX_SECRET_KEY": API_KEY}


def unit_path(daemon: str) -> Path:
    return ROOT / "service" / "systemd" / f"hero-onboarding-{daemon}.service"


def unit(daemon: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value given (Environment= and friends repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in unit_path(daemon).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"no continuation lines, please: {line}"
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, line
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def unit_env(daemon: str) -> dict[str, str]:
    values = unit(daemon)["Service"]["Environment"]
    return dict(value.split("=", 1) for value in values)


def zinit_spec(daemon: str) -> dict:
    return yaml.safe_load(
        (ROOT / "service" / "zinit" / f"hero_onboarding_{daemon}.yaml").read_text()
    )


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (scripts/test does)")
    return found


def verify(units: list[Path]) -> tuple[int, list[str]]:
    """systemd-analyze verify's exit code and whatever it said about our files."""
    result = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
    )
    said = (result.stdout + result.stderr).splitlines()
    names = tuple(path.name for path in units)
    return result.returncode, [line for line in said if any(name in line for name in names)]


@pytest.mark.process
def test_units_pass_systemd_analyze_verify(tmp_path):
    """Both units verify with no complaint, checked on copies with one line changed.

    `systemd-analyze verify` fails a unit whose ExecStart= program does not exist, and no test
    machine has the project installed at /opt/hero-onboarding/.venv, where the units expect it.
    So this verifies copies (in tmp_path) whose ExecStart= names this checkout's own
    .venv/bin/hero-onboarding instead; every other line is verified exactly as shipped. A copy
    with a misspelt key shows that complaints about our files would be seen.
    """
    copies = []
    for daemon in DAEMONS:
        text = unit_path(daemon).read_text()
        shipped = f"\nExecStart={INSTALLED_CLI} {daemon}\n"
        assert text.count(shipped) == 1
        copy = tmp_path / unit_path(daemon).name
        copy.write_text(text.replace(shipped, f"\nExecStart={CLI} {daemon}\n"))
        copies.append(copy)

    code, complaints = verify(copies)
    assert (code, complaints) == (0, [])

    misspelt = tmp_path / "hero-onboarding-misspelt.service"
    misspelt.write_text(copies[0].read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    _, complaints = verify([misspelt])
    assert any("NoNewPrivilege" in line for line in complaints), complaints


@pytest.mark.parametrize("daemon", DAEMONS)
def test_unit_runs_the_daemon_as_a_notify_service_with_room_to_stop(daemon):
    service = unit(daemon)["Service"]
    assert service["ExecStart"] == [f"{INSTALLED_CLI} {daemon}"]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["KillSignal"] == ["SIGTERM"]
    assert service["Restart"] == ["on-failure"]
    assert service["User"] == service["Group"] == ["hero"]
    assert service["EnvironmentFile"] == ["-/etc/hero-onboarding/env"]
    (stop,) = service["TimeoutStopSec"]
    assert re.fullmatch(r"\d+", stop), "TimeoutStopSec in plain seconds"
    assert int(stop) > STOP_BUDGET_S > DEFAULTS["shutdown_timeout_s"]
    for hardening in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert service[hardening] == ["yes"]
    assert service["ProtectSystem"] == ["strict"]


@pytest.mark.parametrize("daemon", DAEMONS)
def test_unit_directories_are_where_the_settings_put_things(daemon):
    """The database (and the admin socket) land in directories systemd makes and lets us write."""
    service = unit(daemon)["Service"]
    settings = load_settings(unit_env(daemon))
    writable = [Path(path) for value in service["ReadWritePaths"] for path in value.split()]
    (state,) = service["StateDirectory"]
    assert settings.db_path.parent == Path("/var/lib") / state
    assert settings.db_path.parent in writable
    assert unit_env(daemon) == unit_env("server"), "both daemons must open the same database"
    if daemon == "admin":
        (runtime,) = service["RuntimeDirectory"]
        assert settings.admin_socket_path.parent == Path("/run") / runtime
        assert settings.admin_socket_path.parent in writable


@pytest.mark.parametrize("daemon", DAEMONS)
def test_zinit_spec_runs_the_daemon(daemon):
    spec = zinit_spec(daemon)
    assert set(spec) <= ZINIT_KEYS
    assert shlex.split(spec["exec"]) == [INSTALLED_CLI, daemon]
    assert spec["log"] == "stdout"
    assert spec["signal"] == {"stop": "sigterm"}
    assert not spec.get("oneshot", False)
    assert isinstance(spec["shutdown_timeout"], int)
    assert spec["shutdown_timeout"] > STOP_BUDGET_S
    assert "after" not in spec  # independent daemons: see the comment in the files
    assert all(isinstance(value, str) for value in spec["env"].values())  # YAML: no `yes`/1
    assert spec["env"]["HERO_ONBOARDING_DATA_DIR"] == unit_env(daemon)["HERO_ONBOARDING_DATA_DIR"]
    assert shlex.split(spec["test"])[0].startswith(INSTALLED_VENV + "/")


# --- sd_notify on its own ---


@contextmanager
def notify_socket() -> Iterator[tuple[socket.socket, Path]]:
    """A datagram socket standing in for systemd's, at a short path (107-byte limit)."""
    directory = short_socket_dir()
    path = directory / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
        yield sock, path
    finally:
        sock.close()
        shutil.rmtree(directory, ignore_errors=True)


def pending(sock: socket.socket) -> list[str]:
    """Every datagram already queued, without waiting."""
    found = []
    while True:
        try:
            found.append(sock.recv(4096, socket.MSG_DONTWAIT).decode())
        except BlockingIOError:
            return found


def test_notify_without_a_supervisor_does_nothing():
    assert sd_notify.notify("READY=1", env={}) is False
    assert sd_notify.ready("up", env={"NOTIFY_SOCKET": ""}) is False


def test_notify_sends_one_datagram_to_a_path_or_an_abstract_socket():
    with notify_socket() as (sock, path):
        assert sd_notify.ready("listening\non two lines", env={"NOTIFY_SOCKET": str(path)})
        assert sd_notify.stopping(env={"NOTIFY_SOCKET": str(path)})
        assert pending(sock) == ["READY=1\nSTATUS=listening on two lines", "STOPPING=1"]

    name = f"hero-onboarding-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as abstract:
        abstract.bind("\0" + name)
        assert sd_notify.notify("READY=1", env={"NOTIFY_SOCKET": "@" + name})
        assert pending(abstract) == ["READY=1"]


def test_notify_failures_warn_once_and_never_raise(monkeypatch, caplog, tmp_path):
    monkeypatch.setattr(sd_notify, "_warned", False)
    with caplog.at_level(logging.WARNING, logger=sd_notify.__name__):
        assert sd_notify.ready("up", env={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False
        assert sd_notify.stopping(env={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False
        assert sd_notify.notify("READY=1", env={"NOTIFY_SOCKET": "relative/path"}) is False
    assert [record.levelno for record in caplog.records] == [logging.WARNING]
    assert "gone" in caplog.records[0].getMessage()


# --- the real daemons under a stand-in supervisor ---


def next_message(
    sock: socket.socket, process: subprocess.Popen[bytes], what: str, log: Path
) -> str:
    """The next datagram, waiting with a deadline; fail at once if the daemon exits first."""
    got: list[str] = []

    def arrived() -> bool:
        exited = process.poll() is not None  # looked at first: what it sent before is queued
        got.extend(pending(sock)[:1])
        return bool(got) or exited

    wait_until(arrived, timeout=20, what=what)
    if not got:
        raise AssertionError(f"exited with {process.returncode} before {what}:\n{log.read_text()}")
    return got[0]


@contextmanager
def daemon_process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with log.open("wb") as out:
        process = subprocess.Popen([CLI, *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def zinit_test_command(daemon: str, **replace: str) -> list[str]:
    """The zinit spec's `test`, pointed at this checkout's venv (and whatever else differs)."""
    command = zinit_spec(daemon)["test"].replace(INSTALLED_VENV, str(Path(CLI).parent))
    for old, new in replace.items():
        command = command.replace(old, new)
    return shlex.split(command)


@pytest.mark.process
def test_server_says_ready_only_once_it_answers_and_stopping_on_sigterm(tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    args = ["server", "--data-dir", str(tmp_path / "data"), "--port", str(port)]
    with notify_socket() as (sock, path):
        env = {**os.environ, **STRIPE_ENV, "NOTIFY_SOCKET": str(path)}
        with daemon_process(args, env, log) as process:
            ready = next_message(sock, process, "the server says READY=1", log)
            assert ready == f"READY=1\nSTATUS=listening on 127.0.0.1:{port}"
            # Told ready, it must already answer: one request each, no retrying.
            assert http_status(f"http://127.0.0.1:{port}/ready") == 200
            assert http_status(f"http://127.0.0.1:{port}/health") == 200
            check = zinit_test_command("server", **{":8780/": f":{port}/"})
            assert subprocess.run(check, timeout=30, check=False).returncode == 0

            process.send_signal(signal.SIGTERM)
            stopping = next_message(sock, process, "the server says STOPPING=1", log)
            assert stopping == "STOPPING=1"
            assert process.wait(timeout=10) == 0
            assert pending(sock) == []  # READY=1 once, STOPPING=1 once, nothing else
            assert (
                subprocess.run(check, capture_output=True, timeout=30, check=False).returncode != 0
            )
    assert "Traceback" not in log.read_text()


@pytest.mark.process
def test_admin_says_ready_only_once_it_answers_and_stopping_on_sigterm(tmp_path):
    sockets = short_socket_dir()
    env = {"HOME": str(tmp_path), "HERO_SOCKET_DIR": str(sockets)}
    socket_path = sockets / "hero_onboarding_admin" / "rpc.sock"
    log = tmp_path / "admin.log"
    try:
        with notify_socket() as (sock, path):
            daemon_env = {**env, "PATH": "/usr/bin", "NOTIFY_SOCKET": str(path)}
            with daemon_process(["admin"], daemon_env, log) as process:
                ready = next_message(sock, process, "the admin daemon says READY=1", log)
                assert ready == f"READY=1\nSTATUS=answering on {socket_path}"
                assert run_cli("rpc", "info", env=env).returncode == 0  # at once, no retrying
                check = zinit_test_command("admin")
                assert subprocess.run(check, env={**os.environ, **env}, timeout=30).returncode == 0

                process.send_signal(signal.SIGTERM)
                stopping = next_message(sock, process, "the admin daemon says STOPPING=1", log)
                assert stopping == "STOPPING=1"
                assert process.wait(timeout=10) == 0
                assert pending(sock) == []
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    assert "Traceback" not in log.read_text()
