"""Driving `hero-onboarding --start/--stop/--status` as an operator would, in a temp Hero home."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from tests.admin_kit import short_socket_dir
from tests.processes import free_port, run_cli
from tests.waiting import wait_until


@dataclass
class Install:
    """One installation: its home, ports and environment; every process it starts is ours."""

    home: Path
    env: dict[str, str]

    @classmethod
    def in_tmp(cls, tmp_path: Path, **extra: str) -> Install:
        home = tmp_path / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = {
            "HOME": str(home),
            "HERO_ONBOARDING_PORT": str(free_port()),
            "HERO_ONBOARDING_SANDBOX_PORT": str(free_port()),
            "HERO_ONBOARDING_SHUTDOWN_TIMEOUT_S": "3",
            "HERO_SOCKET_DIR": str(short_socket_dir()),
            **extra,
        }
        return cls(home, env)

    @property
    def data_dir(self) -> Path:
        return self.home / "hero" / "var" / "hero_onboarding"

    def cli(
        self,
        *args: str,
        timeout: float = 60,
        env: Mapping[str, str] | None = None,
        **more_env: str,
    ) -> subprocess.CompletedProcess[str]:
        """The CLI with this install's environment, plus `env` and `more_env` on top."""
        return run_cli(*args, env={**self.env, **(env or {}), **more_env}, timeout=timeout)

    def status(self) -> dict[str, Any]:
        answer = self.cli("--status", "--json")
        assert answer.returncode in (0, 1, 3), answer.stderr
        return json.loads(answer.stdout)

    def daemon(self, name: str) -> dict[str, Any]:
        return next(d for d in self.status()["daemons"] if d["name"] == name)

    def recorded(self, name: str) -> dict[str, Any]:
        """The built-in supervisor's own record of daemon `name` (run/status.json): what
        --status starts from, read without starting a CLI, for tests that poll it often."""
        try:
            record = json.loads((self.data_dir / "run" / "status.json").read_text())
        except (OSError, ValueError):  # not written yet, or being replaced
            return {}
        entry = record.get("daemons", {}).get(name) or {}
        return {**entry, "pid": (entry.get("identity") or {}).get("pid")}

    def processes(self) -> list[psutil.Process]:
        """Every live process started for this installation (it carries our data dir)."""
        found = []
        marker = f"HOME={self.home}"
        for process in psutil.process_iter():
            try:
                environ = process.environ()
                if f"HOME={environ.get('HOME')}" == marker and process.status() != "zombie":
                    found.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def logs(self) -> str:
        logs = self.data_dir / "logs"
        return "".join(path.read_text(errors="replace") for path in sorted(logs.glob("*.log*")))

    def stop_all(self) -> None:
        """Teardown: whatever a failed test left running goes."""
        self.cli("--stop")
        for process in self.processes():
            process.kill()
        wait_until(lambda: not self.processes(), timeout=10, what="no process of ours is left")
