"""The public daemon on the open internet: every connection on a deadline, and capped.

Real `hero-onboarding server` processes over real loopback sockets, with short timeouts so each
test takes a few seconds; a few in-process checks of the pieces (client keys, the rate limit).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import resource
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from hero_onboarding.config import load_settings
from hero_onboarding.daemon.connections import (
    ConnectionLimits,
    ConnectionTable,
    client_key,
)
from hero_onboarding.log_limits import ClientErrorFilter, RateLimit
from tests.conftest import SIGNING_SECRET
from tests.processes import CLI, HERMETIC, ServerProcess, free_port, http_status
from tests.sandbox_kit import API_KEY
from tests.test_service_units import DAEMONS, unit
from tests.waiting import wait_until

ENV = {"STRIPE_WEBHOOK_SIGNING_KEY": SIGNING_SECRET, "STRIPE_SANDBOX_SECRET_KEY": API_KEY}
HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


def start(
    tmp_path: Path,
    *flags: str,
    nofile: tuple[int, int] | None = None,
) -> ServerProcess:
    """`hero-onboarding server FLAGS` until it answers /ready; `nofile` = (soft, hard) limit."""
    port = free_port()
    log_path = tmp_path / f"server-{port}.log"

    def limit_files() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [CLI, "server", "--data-dir", str(tmp_path / "data"), "--port", str(port), *flags],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **HERMETIC, **ENV},
            preexec_fn=limit_files,  # only setrlimit: safe before exec
        )
    server = ServerProcess(process, port, log_path)
    try:
        wait_until(
            lambda: process.poll() is not None or http_status(server.url + "/ready") == 200,
            timeout=20,
            what="server answers /ready",
        )
    except AssertionError:
        process.kill()
        raise
    assert process.poll() is None, server.log()
    return server


@pytest.fixture
def servers() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def run(tmp_path: Path, *flags: str, **kwargs: object) -> ServerProcess:
        server = start(tmp_path, *flags, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield run
    for server in started:
        server.process.terminate()
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


def connect(port: int, source: str = "127.0.0.1", timeout: float = 5) -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
    )
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def closed_within(sock: socket.socket, timeout: float) -> tuple[bool, bytes]:
    """Read until the server closes (True) or `timeout` passes (False); what it sent."""
    received = b""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return True, received
        if not chunk:
            return True, received
        received += chunk
    return False, received


def health_from(port: int, source: str) -> bytes:
    """The status line /health answers a fresh connection from `source` with (b"": none)."""
    try:
        with connect(port, source, timeout=2) as sock:
            sock.sendall(HEALTH)
            sock.settimeout(2)
            return sock.recv(65536).split(b"\r\n", 1)[0]
    except OSError:
        return b""


def assert_quiet_log(server: ServerProcess, max_bytes: int = 20_000) -> str:
    log = server.log()
    assert "Traceback" not in log, log[-3000:]
    assert "Error handling request" not in log, log[-3000:]
    assert len(log.encode()) < max_bytes, f"{len(log)} bytes of log:\n{log[-3000:]}"
    return log


# --- deadlines ---


@pytest.mark.process
def test_idle_connection_is_closed_within_the_head_timeout(tmp_path, servers):
    server = servers(tmp_path, "--request-head-timeout-s", "1")
    sock = connect(server.port)
    opened = time.monotonic()
    closed, _ = closed_within(sock, 5)
    assert closed, "a connection that sends nothing must not stay open"
    assert 0.8 < time.monotonic() - opened < 3
    assert health_from(server.port, "127.0.0.1") == b"HTTP/1.1 200 OK"
    assert_quiet_log(server)


@pytest.mark.process
def test_trickling_header_lines_does_not_extend_the_head_timeout(tmp_path, servers):
    server = servers(tmp_path, "--request-head-timeout-s", "1")
    sock = connect(server.port)
    opened = time.monotonic()
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    closed = False
    for n in range(40):  # one header line every 0.1 s for up to 4 s
        try:
            sock.sendall(f"X-Trickle-{n}: y\r\n".encode())
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        closed, _ = closed_within(sock, 0.1)
        if closed:
            break
    assert closed, "a head trickled a line at a time must still be cut at the head timeout"
    assert time.monotonic() - opened < 2.5
    assert_quiet_log(server)


@pytest.mark.process
def test_requests_keep_a_connection_open_and_each_head_gets_its_own_timeout(tmp_path, servers):
    # One timer serves every phase of a connection (connections.GuardedRequestHandler._arm):
    # requests finished in time never trip it, however long the connection lives, and a head
    # begun while the timer is still set for an earlier request is cut at its own deadline.
    server = servers(tmp_path, "--request-head-timeout-s", "1")
    sock = connect(server.port)
    sock.settimeout(5)
    opened = time.monotonic()
    while time.monotonic() - opened < 2.5:  # 2.5 head timeouts of requests, 0.2 s apart
        sock.sendall(HEALTH)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
        closed, _ = closed_within(sock, 0.2)
        assert not closed, "a connection whose requests arrive in time must stay open"
    sock.sendall(HEALTH)
    assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
    closed, _ = closed_within(sock, 0.6)  # the timer set for that request is still pending
    assert not closed
    begun = time.monotonic()
    sock.sendall(b"GET /health HTTP/1.1\r\n")  # a head that never ends
    closed, _ = closed_within(sock, 4)
    assert closed, "an unfinished head must be cut at the head timeout"
    assert 0.8 < time.monotonic() - begun < 2.5
    assert_quiet_log(server)


@pytest.mark.process
def test_idle_keepalive_connection_is_closed_after_the_keepalive_timeout(tmp_path, servers):
    # The head clock starts at the next request's first byte: idle time is keep-alive's.
    server = servers(tmp_path, "--request-head-timeout-s", "1", "--keepalive-timeout-s", "3")
    sock = connect(server.port)
    sock.sendall(HEALTH)
    sock.settimeout(5)
    assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
    answered = time.monotonic()
    closed, _ = closed_within(sock, 1.5)
    assert not closed, "an idle kept-alive connection is on the keep-alive clock, not the head's"
    sock.sendall(HEALTH)
    sock.settimeout(5)
    assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK"), "still usable after 1.5 s idle"
    answered = time.monotonic()
    closed, _ = closed_within(sock, 6)
    assert closed, "an idle kept-alive connection must be closed after --keepalive-timeout-s"
    assert 2.5 < time.monotonic() - answered < 5
    assert_quiet_log(server)


@pytest.mark.process
def test_slow_body_fails_with_408_and_the_connection_closes(tmp_path, servers):
    server = servers(tmp_path, "--body-timeout-s", "1")
    sock = connect(server.port)
    sock.sendall(
        b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n" + b"{" * 1000
    )
    sent = time.monotonic()
    closed, answer = closed_within(sock, 6)
    assert closed, "a body that never completes must not hold its connection"
    assert time.monotonic() - sent < 4.5
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert health_from(server.port, "127.0.0.1") == b"HTTP/1.1 200 OK"
    assert_quiet_log(server)


@pytest.mark.process
def test_a_slow_form_body_is_a_408_page_and_the_connection_closes(tmp_path, servers):
    server = servers(tmp_path, "--body-timeout-s", "1")
    sock = connect(server.port)
    sock.sendall(
        b"POST /login HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 4000\r\n\r\naddress="
    )
    closed, answer = closed_within(sock, 6)
    assert closed, "a form that never completes must not hold its connection"
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"That took too long" in answer
    assert_quiet_log(server)


# --- caps ---


@pytest.mark.process
def test_per_client_cap_refuses_quickly_while_others_are_served(tmp_path, servers):
    server = servers(tmp_path, "--max-connections-per-client", "4")
    held: list[socket.socket] = []

    def hold_one() -> bool:
        """A kept-alive connection that was served (the server may not yet have seen the
        /ready probes' connections close: until then they count too)."""
        sock = connect(server.port)
        sock.sendall(HEALTH)
        closed, answer = closed_within(sock, 0.5)
        if closed or not answer.startswith(b"HTTP/1.1 200"):
            sock.close()
            return False
        held.append(sock)
        return len(held) == 4

    try:
        wait_until(hold_one, timeout=10, what="four connections from 127.0.0.1 are served")
        assert health_from(server.port, "127.0.0.2") == b"HTTP/1.1 200 OK"
        extra = connect(server.port)
        started = time.monotonic()
        closed, answer = closed_within(extra, 5)
        assert closed, f"the fifth connection from one address must be refused:\n{server.log()}"
        assert time.monotonic() - started < 2.5  # at once (the margin is for a busy machine)
        assert answer.startswith(b"HTTP/1.1 503") or answer == b""
        assert health_from(server.port, "127.0.0.2") == b"HTTP/1.1 200 OK"
    finally:
        for sock in held:
            sock.close()
    wait_until(
        lambda: health_from(server.port, "127.0.0.1") == b"HTTP/1.1 200 OK",
        timeout=5,
        what="the address is served again once its connections are gone",
    )
    log = assert_quiet_log(server)
    assert "refused a connection from 127.0.0.1" in log


@pytest.mark.process
def test_total_cap_refuses_past_max_connections(tmp_path, servers):
    server = servers(tmp_path, "--max-connections", "20")
    held = [connect(server.port, f"127.0.0.{10 + n % 5}") for n in range(20)]
    try:
        wait_until(
            lambda: health_from(server.port, "127.0.0.3").startswith(b"HTTP/1.1 503"),
            timeout=5,
            what="a 21st connection is refused",
        )
    finally:
        for sock in held:
            sock.close()
    wait_until(
        lambda: health_from(server.port, "127.0.0.3") == b"HTTP/1.1 200 OK",
        timeout=5,
        what="served again once the others have gone",
    )
    assert_quiet_log(server)


@pytest.mark.process
def test_connection_flood_past_the_open_file_limit_leaves_the_daemon_usable(tmp_path, servers):
    server = servers(
        tmp_path,
        "--request-head-timeout-s", "2",
        "--max-connections-per-client", "10000",
        nofile=(256, 256),
    )  # fmt: skip
    flood: list[socket.socket] = []
    try:
        budget = time.monotonic() + 5
        for n in range(400):
            if time.monotonic() > budget:
                break
            with contextlib.suppress(OSError):  # the backlog was full: what a flood gets
                flood.append(connect(server.port, f"127.0.1.{n % 200 + 1}", timeout=0.2))
        # The flood stays connected: the server itself must cut it loose (head timeout) and
        # refuse what is over its caps, so a newcomer is served again.
        wait_until(
            lambda: health_from(server.port, "127.0.0.5") == b"HTTP/1.1 200 OK",
            timeout=10,
            what="/health answers a fresh connection while the flood is still connected",
        )
    finally:
        for sock in flood:
            sock.close()
    log = assert_quiet_log(server)
    assert "out of system resource" not in log
    assert "cannot accept connections" not in log, "the cap keeps accept() clear of EMFILE"
    assert len(flood) > 256, "the flood was larger than the open-file limit"
    assert "open-file limit 256" in log


# --- logs ---


@pytest.mark.process
def test_malformed_requests_are_one_rate_limited_warning_line(tmp_path, servers):
    server = servers(tmp_path)
    for _ in range(30):
        with connect(server.port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n")
            closed, answer = closed_within(sock, 5)
            assert closed
            assert answer.split(b" ", 2)[1] == b"400", answer[:100]
    assert health_from(server.port, "127.0.0.1") == b"HTTP/1.1 200 OK"
    log = assert_quiet_log(server, max_bytes=5000)
    lines = [line for line in log.splitlines() if "malformed request" in line]
    assert len(lines) == 1, log
    assert " WARNING " in lines[0]
    assert "from 127.0.0.1" in lines[0]


def test_rate_limit_counts_what_it_left_out():
    now = [0.0]
    rate = RateLimit(10, clock=lambda: now[0])
    assert rate.allow() == 0
    assert [rate.allow() for _ in range(5)] == [None] * 5
    now[0] = 10.0
    assert rate.allow() == 5
    assert rate.allow() is None


def test_malformed_request_filter_leaves_our_bugs_alone():
    from aiohttp.http_exceptions import BadStatusLine

    filt = ClientErrorFilter()
    try:
        raise RuntimeError("our bug")
    except RuntimeError as exc:
        bug = logging.LogRecord("x", logging.ERROR, "f", 1, "Error", (), (RuntimeError, exc, None))
    assert filt.filter(bug)
    assert bug.levelno == logging.ERROR
    assert bug.exc_info is not None

    def parse_error() -> logging.LogRecord:
        bad = BadStatusLine("\x16\x03")
        return logging.LogRecord(
            "x", logging.ERROR, "f", 1, "Error handling request from %s", ("1.2.3.4",),
            (BadStatusLine, bad, None),
        )  # fmt: skip

    parse = parse_error()
    assert filt.filter(parse)
    assert parse.levelno == logging.WARNING
    assert parse.exc_info is None
    assert parse.getMessage().startswith("malformed request from 1.2.3.4")
    assert not filt.filter(parse_error())  # the next one within the interval is left out


# --- the open-file limit ---


@pytest.mark.process
def test_soft_open_file_limit_is_raised_to_the_hard_limit(tmp_path, servers):
    server = servers(tmp_path, nofile=(512, 4096))
    limits = Path(f"/proc/{server.process.pid}/limits").read_text()
    (line,) = [line for line in limits.splitlines() if line.startswith("Max open files")]
    assert line.split()[3:5] == ["4096", "4096"], line
    log = server.log()
    assert len(re.findall(r"open-file limit 4096 \(raised from 512\)", log)) == 1, log


@pytest.mark.parametrize("daemon", DAEMONS)
def test_units_allow_many_open_files(daemon):
    assert unit(daemon)["Service"]["LimitNOFILE"] == ["65536"]


def test_connection_cap_stays_below_the_open_file_limit(tmp_path):
    settings = load_settings({"HOME": str(tmp_path)})
    assert ConnectionLimits.of(settings, open_files=1024).max_connections == 960
    assert ConnectionLimits.of(settings, open_files=65536).max_connections == 1000


# --- who counts as one client ---


def test_client_keys():
    assert client_key(("203.0.113.7", 5000)) == "203.0.113.7"
    assert client_key(("::ffff:203.0.113.7", 5000, 0, 0)) == "203.0.113.7"
    assert client_key(("2001:db8:1:2:aaaa::1", 5000, 0, 0)) == "2001:db8:1:2::/64"
    assert client_key(("2001:db8:1:2:bbbb::9", 5000, 0, 0)) == "2001:db8:1:2::/64"
    assert client_key("/run/x.sock") is None


def test_trusted_proxy_is_not_held_to_the_per_client_cap(tmp_path):
    env = {"HOME": str(tmp_path)}
    direct = ConnectionTable(
        ConnectionLimits.of(load_settings(env, {"max_connections_per_client": "2"}))
    )
    assert [direct.admit("127.0.0.1", "127.0.0.1") for _ in range(3)] == [True, True, False]
    proxied = ConnectionTable(
        ConnectionLimits.of(
            load_settings(
                env, {"max_connections_per_client": "2", "client_ip_header": "X-Forwarded-For"}
            )
        )
    )
    assert all(proxied.admit("127.0.0.1", "127.0.0.1") for _ in range(10))
    assert [proxied.admit("198.51.100.2", "198.51.100.2") for _ in range(3)] == [
        True,
        True,
        False,
    ]


@pytest.mark.process
def test_clients_leaving_mid_body_are_one_line_not_tracebacks(tmp_path, servers):
    server = servers(tmp_path)
    for _ in range(20):
        sock = connect(server.port)
        sock.sendall(
            b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{"
        )
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset, mid-body
    wait_until(
        lambda: "went away mid-request" in server.log(), timeout=5, what="the line is logged"
    )
    assert health_from(server.port, "127.0.0.1") == b"HTTP/1.1 200 OK"
    log = assert_quiet_log(server, max_bytes=5000)
    assert len([line for line in log.splitlines() if "went away" in line]) == 1, log


@pytest.mark.process
def test_memory_goes_back_near_baseline_after_a_burst_of_large_bodies(tmp_path, servers):
    """100 clients hold a ~1 MiB unfinished body each, then leave: RSS returns near where it was
    (without gc.collect and malloc_trim after the burst it stayed ~100 MiB higher)."""
    server = servers(tmp_path, "--body-timeout-s", "60")
    process = psutil.Process(server.process.pid)
    before = process.memory_info().rss
    head = b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"
    body = b"{" + b" " * (1048576 - 2)
    clients = [connect(server.port, f"127.0.2.{1 + n // 50}") for n in range(100)]
    try:
        for sock in clients:
            sock.sendall(head + body)
        wait_until(
            lambda: process.memory_info().rss > before + 80 * 2**20,
            timeout=10,
            what="the server holds the bodies",
        )
    finally:
        for sock in clients:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
    wait_until(
        lambda: process.memory_info().rss < before + 20 * 2**20,
        timeout=10,
        what=f"RSS back within 20 MiB of {before >> 20} MiB",
    )
    assert_quiet_log(server)
