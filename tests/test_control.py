"""`hero-onboarding --start/--stop/--status` with the built-in supervisor: real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from hero_onboarding.config import load_settings
from hero_onboarding.control.daemons import service_name
from hero_onboarding.control.supervise import BACKOFF_ENV
from hero_onboarding.control.supervisor import MAX_CRASHES, RestartPolicy, RotatingLog
from tests.conftest import SIGNING_SECRET
from tests.control_kit import Install
from tests.processes import CLI, HERMETIC
from tests.sandbox_kit import API_KEY
from tests.waiting import wait_until

E = "hero-onboarding: error: "


@pytest.fixture
def install(tmp_path: Path) -> Iterator[Install]:
    installed = Install.in_tmp(tmp_path)
    yield installed
    installed.stop_all()


@pytest.mark.process
def test_start_sandbox_survives_a_kill_and_stops_leaving_nothing(install: Install) -> None:
    started = install.cli("--start", "--sandbox")
    assert started.returncode == 0, started.stderr
    port = install.env["HERO_ONBOARDING_PORT"]
    assert f"public URL:   http://127.0.0.1:{port}" in started.stdout
    assert "admin socket: " in started.stdout
    assert "hero-onboarding --stop" in started.stdout

    again = install.cli("--start", "--sandbox")
    assert again.returncode == 0
    assert again.stdout.startswith("already running")

    status = install.status()
    assert status["running"]
    assert status["healthy"]
    assert status["sandbox"]
    assert status["backend"] == "builtin"
    daemons = {d["name"]: d for d in status["daemons"]}
    assert set(daemons) == {"sandbox", "server", "admin"}
    for daemon in daemons.values():
        assert daemon["state"] == "running"
        assert daemon["health"] == "ok"
        assert daemon["pid"]
        assert daemon["rss_bytes"] > 0
        assert daemon["uptime_s"] >= 0

    killed = daemons["server"]["pid"]
    psutil.Process(killed).kill()
    wait_until(
        lambda: (
            (d := install.daemon("server"))["pid"] not in (None, killed) and d["health"] == "ok"
        ),
        timeout=20,
        what="the supervisor brings the public daemon back",
    )
    assert install.daemon("server")["restarts"] == 1

    keys = json.loads((install.data_dir / "sandbox-keys.json").read_text())
    assert (install.data_dir / "sandbox-keys.json").stat().st_mode & 0o777 == 0o600
    ours = install.processes()
    assert len(ours) == 4  # the supervisor and three daemons
    shown = " ".join(" ".join(p.cmdline()) for p in ours) + install.cli("--status").stdout
    for secret in keys.values():
        assert secret not in shown
        assert secret not in install.logs()

    stopped = install.cli("--stop")
    assert stopped.returncode == 0
    assert stopped.stdout.strip() == "stopped"
    assert install.processes() == []
    assert install.cli("--stop").returncode == 0
    not_running = install.cli("--status")
    assert not_running.returncode == 3
    assert "not running" in not_running.stdout


@pytest.mark.process
def test_a_daemon_that_keeps_crashing_is_given_up_and_status_says_so(install: Install) -> None:
    # A short first restart delay (it still doubles): the same give-up, in seconds, not 30.
    fast = {BACKOFF_ENV: "0.05"}
    assert install.cli("--start", "--sandbox", env=fast).returncode == 0
    killed: int | None = None
    for crash in range(MAX_CRASHES):

        def restarted(last: int | None = killed) -> bool:
            entry = install.recorded("server")
            return entry.get("state") == "running" and entry["pid"] != last

        wait_until(
            restarted,
            timeout=40,
            what=f"the public daemon is back before crash {crash + 1}",
        )
        killed = install.recorded("server")["pid"]
        psutil.Process(killed).kill()
    wait_until(
        lambda: install.recorded("server").get("state") == "failed",
        timeout=10,
        what="the supervisor gives up",
    )
    answer = install.cli("--status")
    assert answer.returncode == 1
    assert f"gave up after {MAX_CRASHES} exits" in answer.stdout
    assert install.daemon("admin")["health"] == "ok"  # the others run on


@pytest.mark.process
def test_a_stale_record_naming_an_unrelated_process_is_never_signalled(install: Install) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        process = psutil.Process(bystander.pid)
        run_dir = install.data_dir / "run"
        run_dir.mkdir(parents=True)
        for identity in (
            # the pid is right but the start time is not: the pid was recycled
            {"pid": bystander.pid, "create_time": process.create_time() - 100,
             "cmdline": process.cmdline()},
            # start time right, command line not ours
            {"pid": bystander.pid, "create_time": process.create_time(),
             "cmdline": [sys.executable, "-m", "hero_onboarding", "supervise"]},
        ):  # fmt: skip
            record = {"supervisor": identity, "daemons": {"server": {"identity": identity}}}
            (run_dir / "status.json").write_text(json.dumps(record))
            answer = install.cli("--stop")
            assert answer.returncode == 0
            assert answer.stdout.strip() == "not running; nothing to stop"
            assert bystander.poll() is None, "an unrelated process was signalled"
        assert install.cli("--status").returncode == 3
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.process
def test_a_start_that_does_not_come_up_fails_with_the_log_and_leaves_nothing(
    install: Install,
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(install.env["HERO_ONBOARDING_PORT"])))
        taken.listen()
        answer = install.cli("--start", "--sandbox", HERO_ONBOARDING_START_TIMEOUT_S="4")
    assert answer.returncode == 1
    assert answer.stderr.startswith(f"{E}the service did not come up: not up within 4 s (")
    assert "server: " in answer.stderr.splitlines()[0]
    assert "address already in use" in answer.stderr  # the server's own log line
    assert install.processes() == []


@pytest.mark.process
def test_secrets_from_the_environment_never_reach_ps_logs_or_status(install: Install) -> None:
    secrets = {"STRIPE_WEBHOOK_SIGNING_KEY": SIGNING_SECRET, "STRIPE_SANDBOX_SECRET_KEY": API_KEY}
    assert install.cli("--start", env=secrets).returncode == 0
    shown = " ".join(" ".join(p.cmdline()) for p in install.processes())
    shown += install.cli("--status").stdout + install.cli("--status", "--json").stdout
    shown += install.logs()
    assert SIGNING_SECRET not in shown
    assert API_KEY not in shown


@pytest.mark.process
def test_a_missing_secret_stops_start_naming_it_and_both_places(install: Install) -> None:
    answer = install.cli("--start", STRIPE_SANDBOX_SECRET_KEY=API_KEY)
    assert answer.returncode == 2
    assert answer.stderr == (
        f"{E}STRIPE_WEBHOOK_SIGNING_KEY is not set (looked in: hero_proc at "
        "/nonexistent/hero_proc/rpc.sock (not running), environment)\n"
    )
    assert install.processes() == []


@pytest.mark.process
def test_bad_control_usage_is_one_line_and_exit_2(install: Install) -> None:
    for args, says in (
        (["--start", "--stop"], "give one of --start, --stop, not several"),
        (["--start", "server"], "--start cannot come before a command"),
        (["--backend", "nosuch", "--start"], "Invalid value for '--backend'"),
    ):
        answer = install.cli(*args)
        assert answer.returncode == 2
        [line] = answer.stderr.splitlines()
        assert says in line


def test_the_restart_delay_doubles_from_the_first_up_to_the_cap() -> None:
    assert [RestartPolicy().delay_s(n) for n in range(1, 9)] == [
        0.5, 1, 2, 4, 8, 16, 30, 30
    ]  # fmt: skip
    fast = RestartPolicy(first_delay_s=0.05)
    assert [fast.delay_s(n) for n in (1, 2, 3)] == [0.05, 0.1, 0.2]
    assert fast.max_crashes == MAX_CRASHES  # only the delay is shortened


def test_the_supervisor_log_rotates_by_size(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "server.log", max_bytes=100, backups=2)
    for number in range(10):
        log.write(f"line {number} ".ljust(40).encode() + b"\n")
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["server.log", "server.log.1", "server.log.2"]
    assert (tmp_path / "server.log").stat().st_size < 100
    assert b"line 9" in (tmp_path / "server.log").read_bytes()
    assert b"line 0" not in b"".join(p.read_bytes() for p in tmp_path.iterdir())


@pytest.mark.process
def test_status_json_holds_no_environment(install: Install) -> None:
    assert install.cli("--start", "--sandbox").returncode == 0
    recorded = (install.data_dir / "run" / "status.json").read_text()
    keys = json.loads((install.data_dir / "sandbox-keys.json").read_text())
    assert all(value not in recorded for value in keys.values())
    assert install.cli("--stop").returncode == 0
    assert not (install.data_dir / "run" / "status.json").exists()


@pytest.mark.process
def test_sigterm_to_the_supervisor_stops_every_daemon(install: Install) -> None:
    assert install.cli("--start", "--sandbox").returncode == 0
    status = install.status()
    supervisor = psutil.Process(status["supervisor_pid"])
    supervisor.send_signal(signal.SIGTERM)
    wait_until(lambda: install.processes() == [], timeout=20, what="everything has stopped")
    assert install.cli("--status").returncode == 3


@pytest.mark.process
def test_check_names_what_is_wrong_then_that_the_running_service_answers(
    install: Install,
) -> None:
    before = install.cli("check")
    assert before.returncode == 1
    lines = before.stdout.splitlines()
    assert lines[0].startswith("ok    settings: data dir ")
    assert lines[1].startswith("FAIL  secrets: STRIPE_SANDBOX_SECRET_KEY is not set (looked in:")
    assert lines[2].startswith("ok    database: ")
    assert "not created yet" in lines[2]
    assert lines[3] == "ok    service: not running (start it with --start)"

    assert install.cli("--start", "--sandbox", HERO_ONBOARDING_LOG_FORMAT="json").returncode == 0
    after = install.cli("check")
    assert after.returncode == 0, after.stdout
    for expected in (
        "ok    secrets: sandbox test keys in ",
        "ok    database: ",
        "ok    service: running under builtin",
        "ok    public /health: ok",
        "ok    public /ready: ok",
        "ok    admin /health: ok",
        "ok    admin /openrpc.json: ok",
    ):
        assert any(line.startswith(expected) for line in after.stdout.splitlines()), expected
    assert "schema version" in after.stdout

    server_log = (install.data_dir / "logs" / "server.log").read_text().splitlines()
    entries = [json.loads(line) for line in server_log]
    assert {entry["daemon"] for entry in entries} == {"server"}
    assert any("listening on" in entry["message"] for entry in entries)
    assert all({"time", "level", "logger", "message"} <= entry.keys() for entry in entries)


@pytest.mark.process
def test_two_starts_at_once_make_one_service(install: Install) -> None:
    starts = [
        subprocess.Popen(
            [CLI, "--start", "--sandbox"],
            env={**os.environ, **HERMETIC, **install.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=60) for process in starts]
    assert [process.returncode for process in starts] == [0, 0], outputs
    assert sorted(out.startswith("already running") for out, _ in outputs) == [False, True]
    assert len(install.processes()) == 4
    assert install.status()["healthy"]


@pytest.mark.process
def test_a_killed_supervisor_takes_its_daemons_and_a_new_start_works(install: Install) -> None:
    assert install.cli("--start", "--sandbox").returncode == 0
    psutil.Process(install.status()["supervisor_pid"]).kill()
    wait_until(lambda: install.processes() == [], timeout=15, what="the daemons follow it")
    assert install.cli("--status").returncode == 3
    assert install.cli("--start", "--sandbox").returncode == 0
    assert install.status()["healthy"]


def test_a_log_removed_under_the_supervisor_is_recreated(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "server.log", max_bytes=100, backups=2)
    log.write(b"x" * 60 + b"\n")
    (tmp_path / "server.log").unlink()  # an operator's rm, or an outside logrotate
    log.write(b"y" * 60 + b"\n")  # crosses the limit: rotating finds nothing to move
    log.write(b"still logging\n")
    log.close()
    assert (tmp_path / "server.log").read_bytes() == b"still logging\n"


def test_service_names_follow_the_resolved_data_dir(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    names = {
        service_name(load_settings({"HOME": str(home)}), "server")
        for home in (real, tmp_path / "link")
    }
    assert len(names) == 1
    other = service_name(load_settings({"HOME": str(tmp_path / "other")}), "server")
    assert other not in names
