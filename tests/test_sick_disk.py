"""Sick disks under real daemons: a frozen filesystem (fsfreeze on a loop-mounted ext4) and a
full one (a small tmpfs). The daemon must keep answering what needs no disk, refuse quickly
what does, say so on /ready, and credit every payment exactly once when the disk comes back.

These machines and CI run as root, so the mounts always happen; each is undone in teardown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.admin_kit import short_socket_dir
from tests.conftest import SIGNING_SECRET
from tests.processes import CLI, HERMETIC, ServerProcess, free_port, run_cli, start_daemon
from tests.stripe_events import body_of, checkout_event, new_id, sign
from tests.test_server_process import ENV, balance_in_file, make_user, open_checkouts_of
from tests.waiting import wait_until

pytestmark = [pytest.mark.process, pytest.mark.slow]  # real processes, for seconds each

READ_TIMEOUT_S = 1.0
WRITE_TIMEOUT_S = 2.0


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@pytest.fixture
def ext4_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB ext4 filesystem on a loop device, mounted at tmp_path/disk."""
    image, mount = tmp_path / "disk.img", tmp_path / "disk"
    mount.mkdir()
    with image.open("wb") as f:
        f.truncate(64 << 20)
    _run("mkfs.ext4", "-q", "-F", str(image))
    _run("mount", "-o", "loop", str(image), str(mount))
    try:
        yield mount
    finally:
        subprocess.run(["fsfreeze", "-u", str(mount)], capture_output=True, check=False)
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    _run("mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mount))
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def timed_get(url: str, *, timeout: float = 10.0, headers: dict | None = None) -> tuple[int, float]:
    """(status, seconds); a connection that does not answer within `timeout` fails the test."""
    started = time.monotonic()
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.monotonic() - started


def ready_detail(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url + "/ready", timeout=10) as resp:
            return resp.status, json.loads(resp.read()).get("detail", "")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()).get("detail", "")


def post_webhook(url: str, evt: dict, *, timeout: float = 30.0) -> tuple[int, str, float]:
    body = body_of(evt)
    request = urllib.request.Request(
        url + "/webhooks/stripe",
        data=body.encode(),
        headers={
            "Stripe-Signature": sign(body, SIGNING_SECRET),
            "Content-Type": "application/json",
        },
        method="POST",
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    return status, text, time.monotonic() - started


def start_public(data_dir: Path) -> ServerProcess:
    port = free_port()
    return start_daemon(
        [
            "server",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--read-timeout-s",
            str(READ_TIMEOUT_S),
            "--write-timeout-s",
            str(WRITE_TIMEOUT_S),
        ],
        port=port,
        ready_path="/ready",
        log_dir=data_dir.parent,  # on the sick disk too: its log writes stall like the supervisor's
        env=ENV,
    )


def paid(sid: str, amount: int) -> dict:
    return checkout_event(
        "checkout.session.completed", sid=sid, amount=amount, payment_intent=new_id("pi")
    )


def stop(server) -> None:
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


def test_a_frozen_data_disk_leaves_health_answering_and_everything_else_failing_fast(ext4_disk):
    data_dir = ext4_disk / "data"
    db = data_dir / "onboarding.db"
    sid = make_user(db)
    before, during = paid(sid, 700), paid(sid, 1100)
    open_checkouts_of(db, before, during)
    server = start_public(data_dir)
    try:
        assert post_webhook(server.url, before)[:2] == (
            200,
            '{"received": true, "outcome": "credited"}',
        )
        _run("fsfreeze", "-f", str(ext4_disk))
        try:
            # A page that reads (the visitor's session) and /ready answer in bounded time.
            # Whether a read needs the disk depends on SQLite's WAL read marks (starting a read
            # may write one into the -shm mapping, which then blocks until the thaw): if it
            # does, the read timeout turns it into a 503.
            status, took = timed_get(
                server.url + "/account", headers={"Cookie": "hero_session=" + "x" * 32}
            )
            assert status in (200, 503)
            assert took < READ_TIMEOUT_S + 3
            assert timed_get(server.url + "/ready")[1] < READ_TIMEOUT_S + 3
            # A payment needs the disk: 500 (Stripe retries) once the write timeout passes.
            status, text, took = post_webhook(server.url, during)
            assert status == 500, text
            assert took < 2 * WRITE_TIMEOUT_S + 3
            # Liveness needs no disk, however many times it is asked meanwhile.
            for _ in range(5):
                status, took = timed_get(server.url + "/health", timeout=5)
                assert status == 200
                assert took < 1.0
            # Readiness knows: the writer has been stuck longer than the write timeout.
            for _ in range(3):
                status, took = timed_get(server.url + "/ready")
                assert status == 503
                assert took < READ_TIMEOUT_S + 3
        finally:
            _run("fsfreeze", "-u", str(ext4_disk))
        wait_until(
            lambda: ready_detail(server.url)[0] == 200, timeout=20, what="/ready after the thaw"
        )
        # Stripe's retry of the refused delivery credits it, once.
        assert post_webhook(server.url, during)[:2] == (
            200,
            '{"received": true, "outcome": "credited"}',
        )
        assert post_webhook(server.url, during)[1] == '{"received": true, "outcome": "duplicate"}'
    finally:
        stop(server)
    assert balance_in_file(db, sid) == 1800
    log = server.log()
    assert "Traceback" not in log
    assert "not ready: " in log


def fill(directory: Path) -> Path:
    """Write a file until the filesystem has no space left; return it."""
    filler = directory / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_makes_ready_say_so_until_space_returns(small_tmpfs, tmp_path):
    data_dir = small_tmpfs / "data"
    db = data_dir / "onboarding.db"
    sid = make_user(db)
    events = [paid(sid, 100 + n) for n in range(40)]
    open_checkouts_of(db, *events)
    port = free_port()
    server = start_daemon(
        ["server", "--data-dir", str(data_dir), "--port", str(port)],
        port=port,
        ready_path="/ready",
        log_dir=tmp_path,
        env=ENV,
    )
    try:
        filler = fill(small_tmpfs)
        answers = [post_webhook(server.url, evt)[:2] for evt in events]
        refused = [evt for evt, (status, _) in zip(events, answers, strict=True) if status != 200]
        assert refused, "the full disk refused no write"
        assert {status for status, _ in answers} <= {200, 500}
        status, detail = ready_detail(server.url)
        assert status == 503
        assert "FullError" in detail or "full" in detail.lower()
        assert timed_get(server.url + "/health")[0] == 200

        filler.unlink()
        wait_until(
            lambda: ready_detail(server.url)[0] == 200, timeout=20, what="/ready with space again"
        )
        for evt in refused:  # Stripe retries each refused delivery
            assert post_webhook(server.url, evt)[:2] == (
                200,
                '{"received": true, "outcome": "credited"}',
            )
    finally:
        stop(server)
    assert balance_in_file(db, sid) == sum(100 + n for n in range(40))
    assert "Traceback" not in server.log()


def test_the_admin_daemon_answers_minus_32015_when_the_disk_refuses_writes(small_tmpfs):
    data_dir = small_tmpfs / "data"
    sid = make_user(data_dir / "onboarding.db")
    sockets = short_socket_dir()
    env = {
        "HOME": str(small_tmpfs),
        "HERO_SOCKET_DIR": str(sockets),
        "HERO_ONBOARDING_DATA_DIR": str(data_dir),
        "HERO_ONBOARDING_RECONCILE_INTERVAL_S": "0",
    }
    log_path = small_tmpfs.parent / "admin.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [CLI, "admin"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **HERMETIC, **env},
        )
    try:
        wait_until(
            lambda: process.poll() is not None or run_cli("rpc", "info", env=env).returncode == 0,
            timeout=20,
            what="the admin daemon answers",
        )
        fill(small_tmpfs)
        refused = []
        for n in range(60):  # each call adds to the WAL until the disk refuses one
            answer = run_cli(
                "rpc",
                "billing_adjust",
                json.dumps(
                    {
                        "sid": sid,
                        "amount": 5,
                        "reason": "disk test",
                        "idempotency_key": f"disk-{n:04d}",
                    }
                ),
                env=env,
            )
            if answer.returncode != 0:
                refused.append(answer)
            if len(refused) == 3:
                break
        assert refused, "the full disk refused no write"
        for answer in refused:
            assert "(-32015)" in answer.stderr, answer.stderr
            assert "database is unavailable" in answer.stderr
            assert "internal error" not in answer.stderr
        assert run_cli("rpc", "billing_get", json.dumps({"sid": sid}), env=env).returncode == 0
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    assert "Traceback" not in log_path.read_text()
