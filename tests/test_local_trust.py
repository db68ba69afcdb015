"""Another local user must not be able to stand in for the admin daemon.

A throwaway user (made with useradd, removed with userdel -r) pre-creates the socket
directory, or listens on the socket: the daemon refuses to serve from that directory, and
`hero-onboarding rpc` refuses that server before sending it anything.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hero_onboarding.primitives import StartupError
from hero_onboarding.rpc.hero_proc import HeroProcClient, HeroProcError
from hero_onboarding.rpc.server import bind_unix_socket
from tests.admin_kit import short_socket_dir
from tests.processes import run_cli
from tests.waiting import wait_until

E = "hero-onboarding: error: "
SYSTEM_PYTHON = "/usr/bin/python3"  # the venv's interpreter may live where that user cannot go

# A stand-in server: records every byte it receives, answers like the real daemon would.
FAKE_SERVER = r"""
import json, os, socket, sys
path, record = sys.argv[1], sys.argv[2]
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path)
os.chmod(path, 0o666)
listener.listen(4)
open(record + ".ready", "w").close()  # only now will a connect succeed
while True:
    conn, _ = listener.accept()
    received = b""
    conn.settimeout(10)
    try:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            received += chunk
            if b"\r\n\r\n" in received:
                body = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"service": "fake"}})
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body.encode()))
                break
    except OSError:
        pass
    conn.close()
    with open(record, "ab") as out:
        out.write(b"<connection>" + received + b"</connection>\n")
"""


@dataclass(frozen=True)
class OtherUser:
    name: str
    uid: int
    gid: int
    home: Path


@pytest.fixture
def other_user() -> Iterator[OtherUser]:
    name = f"hot{uuid.uuid4().hex[:10]}"
    home = Path("/tmp") / f"{name}-home"
    subprocess.run(
        ["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/sh", name],
        check=True,
        capture_output=True,
    )
    try:
        entry = pwd.getpwnam(name)
        yield OtherUser(name, entry.pw_uid, entry.pw_gid, home)
    finally:
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)


def foreign_socket_dir(user: OtherUser) -> tuple[Path, Path]:
    """A socket root we own, with the service's directory pre-created by `user`."""
    root = short_socket_dir()
    root.chmod(0o711)  # `user` may pass through it to their directory
    service_dir = root / "hero_onboarding_admin"
    service_dir.mkdir(mode=0o700)
    os.chown(service_dir, user.uid, user.gid)
    return root, service_dir


@pytest.mark.process
def test_the_admin_daemon_refuses_a_socket_directory_another_user_owns(
    other_user: OtherUser, tmp_path: Path
) -> None:
    root, service_dir = foreign_socket_dir(other_user)
    started = run_cli("admin", env={"HOME": str(tmp_path), "HERO_SOCKET_DIR": str(root)})
    assert started.returncode == 1
    assert started.stderr == (
        f"{E}socket directory {service_dir} is owned by uid {other_user.uid}, not 0: "
        "remove it or fix its owner\n"
    )
    assert list(service_dir.iterdir()) == []  # no lock file, no socket left in their directory


def test_a_socket_directory_writable_by_others_is_refused_and_a_loose_one_tightened() -> None:
    loose = short_socket_dir() / "svc"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    bound = bind_unix_socket(loose / "rpc.sock")
    bound.release()
    assert loose.stat().st_mode & 0o777 == 0o700
    loose.chmod(0o775)
    with pytest.raises(StartupError, match=r"svc is writable by group or others \(mode 0775\)"):
        bind_unix_socket(loose / "rpc.sock")


@pytest.mark.process
def test_parents_another_user_could_swap_are_refused(other_user: OtherUser) -> None:
    theirs = short_socket_dir() / "theirs"
    theirs.mkdir()
    os.chown(theirs, other_user.uid, other_user.gid)
    with pytest.raises(StartupError, match=f"theirs is owned by uid {other_user.uid}, not 0 or"):
        bind_unix_socket(theirs / "svc" / "rpc.sock")

    open_parent = short_socket_dir() / "open"
    open_parent.mkdir()
    open_parent.chmod(0o777)
    with pytest.raises(StartupError, match="open is writable by group or others without the st"):
        bind_unix_socket(open_parent / "svc" / "rpc.sock")
    open_parent.chmod(0o1777)  # sticky, like /tmp: only an entry's owner may rename it
    bind_unix_socket(open_parent / "svc" / "rpc.sock").release()

    root = short_socket_dir()
    (root / "real").mkdir()
    link = root / "link"
    link.symlink_to(root / "real")
    os.lchown(link, other_user.uid, other_user.gid)
    with pytest.raises(StartupError, match="link is a symbolic link owned by uid"):
        bind_unix_socket(link / "svc" / "rpc.sock")
    os.lchown(link, 0, 0)
    bind_unix_socket(link / "svc" / "rpc.sock").release()


def start_fake(socket_path: Path, record: Path, *, user: OtherUser | None) -> subprocess.Popen:
    as_user: dict[str, Any] = (
        {"user": user.uid, "group": user.gid, "extra_groups": []} if user else {}
    )
    process = subprocess.Popen(
        [SYSTEM_PYTHON, "-c", FAKE_SERVER, str(socket_path), str(record)],
        cwd="/",
        env={"PATH": "/usr/bin"},
        **as_user,
    )
    wait_until(
        lambda: process.poll() is not None or Path(f"{record}.ready").exists(),
        timeout=10,
        what="the fake server listens",
    )
    assert process.poll() is None
    return process


@pytest.mark.process
def test_rpc_refuses_a_server_run_by_another_user_and_sends_it_nothing(
    other_user: OtherUser, tmp_path: Path
) -> None:
    root, service_dir = foreign_socket_dir(other_user)
    socket_path = service_dir / "rpc.sock"
    record = other_user.home / "received"
    env = {"HOME": str(tmp_path), "HERO_SOCKET_DIR": str(root)}
    fake = start_fake(socket_path, record, user=other_user)
    try:
        refused = run_cli("rpc", "billing_adjust", '{"sid": "s", "amount": 123}', env=env)
        assert refused.returncode == 2
        assert refused.stdout == ""
        assert refused.stderr == (
            f"{E}refusing the server on {socket_path}: it runs as uid {other_user.uid} "
            f"({other_user.name}), not as uid 0 or root; nothing was sent "
            f"(who owns {service_dir}?)\n"
        )
        wait_until(lambda: record.exists(), timeout=10, what="the fake saw the connection end")
        assert record.read_bytes() == b"<connection></connection>\n"
    finally:
        fake.kill()
        fake.wait(timeout=10)


@pytest.mark.process
def test_the_same_fake_run_as_our_own_uid_is_talked_to(tmp_path: Path) -> None:
    """The control: the refusal above is about the uid, not about the fake."""
    root = short_socket_dir()
    (root / "hero_onboarding_admin").mkdir(mode=0o700)
    socket_path = root / "hero_onboarding_admin" / "rpc.sock"
    record = tmp_path / "received"
    fake = start_fake(socket_path, record, user=None)
    try:
        answered = run_cli("rpc", "info", env={"HOME": str(tmp_path), "HERO_SOCKET_DIR": str(root)})
        assert answered.returncode == 0, answered.stderr
        assert '"service": "fake"' in answered.stdout
        wait_until(lambda: record.exists(), timeout=10, what="the fake saw the connection end")
        assert b"POST /rpc" in record.read_bytes()
    finally:
        fake.kill()
        fake.wait(timeout=10)


@pytest.mark.process
async def test_a_hero_proc_run_by_another_user_is_an_error_and_hears_nothing(
    other_user: OtherUser,
) -> None:
    """hero_proc is sent service environments, secrets included: the same check applies."""
    _root, service_dir = foreign_socket_dir(other_user)
    socket_path = service_dir / "rpc.sock"
    record = other_user.home / "received"
    fake = start_fake(socket_path, record, user=other_user)
    try:
        async with HeroProcClient(socket_path) as hero_proc:
            with pytest.raises(HeroProcError, match="UntrustedServer"):
                await hero_proc.ping()
        wait_until(lambda: record.exists(), timeout=10, what="the fake saw the connection end")
        assert record.read_bytes() == b"<connection></connection>\n"
    finally:
        fake.kill()
        fake.wait(timeout=10)
