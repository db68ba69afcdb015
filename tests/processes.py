"""Starting the real `hero-onboarding` console script and talking to it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.waiting import wait_until

CLI = str(Path(sys.executable).parent / "hero-onboarding")
# No test may reach a real hero_proc on this machine: tests that want one start a fake.
HERMETIC = {"HERO_PROC_SOCKET": "/nonexistent/hero_proc/rpc.sock"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    data_dir: Path, *, port: int, env: dict[str, str], timeout: float = 20
) -> ServerProcess:
    return start_daemon(
        ["server", "--data-dir", str(data_dir), "--port", str(port)],
        port=port,
        ready_path="/ready",
        log_dir=data_dir.parent,
        env=env,
        timeout=timeout,
    )


def start_daemon(
    args: list[str],
    *,
    port: int,
    ready_path: str,
    log_dir: Path,
    env: dict[str, str],
    timeout: float = 20,
) -> ServerProcess:
    """Run `hero-onboarding ARGS` until GET ready_path answers 200 (or it exits: then fail)."""
    log_path = log_dir / f"{args[0]}-{port}-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [CLI, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **HERMETIC, **env},
        )
    server = ServerProcess(process, port, log_path)
    try:
        wait_until(
            lambda: process.poll() is not None or http_status(server.url + ready_path) == 200,
            timeout=timeout,
            what=f"{args[0]} answers {ready_path}",
        )
    except AssertionError:
        process.kill()
        raise
    if process.poll() is not None:
        raise AssertionError(f"{args[0]} exited with {process.returncode}:\n{server.log()}")
    return server


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args],
        env={**os.environ, **HERMETIC, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
