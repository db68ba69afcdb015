"""What the service writes is readable by its own user only: directories 0700, files 0600.

The data directory and the logs hold Mycelium addresses, sids, amounts and checkout ids.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hero_onboarding.control.supervisor import RotatingLog
from tests.control_kit import Install
from tests.waiting import wait_until


@pytest.fixture
def install(tmp_path: Path) -> Iterator[Install]:
    installed = Install.in_tmp(tmp_path)
    yield installed
    installed.stop_all()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.process
def test_a_started_service_keeps_its_files_to_its_own_user(install: Install) -> None:
    data = install.data_dir
    logs = data / "logs"
    logs.mkdir(parents=True)  # left by an older release, readable by everyone
    for directory in (data.parent.parent, data.parent, data, logs):
        directory.chmod(0o755)
    old_log = logs / "server.log"
    old_log.write_text("an older line\n")
    old_log.chmod(0o644)

    started = install.cli("--start", "--sandbox")
    assert started.returncode == 0, started.stderr
    wal = data / "onboarding.db-wal"
    wait_until(wal.exists, timeout=20, what="the database is open in WAL mode")

    directories = [data, logs, data / "run"]
    files = [
        data / "onboarding.db",
        wal,
        *sorted(logs.glob("*.log")),
        *sorted(p for p in (data / "run").iterdir() if p.is_file()),
        *sorted(p for p in data.iterdir() if p.is_file()),
    ]
    assert {p.name for p in logs.glob("*.log")} >= {"server.log", "admin.log", "sandbox.log"}
    assert {mode(p) for p in directories} == {0o700}, [(p, oct(mode(p))) for p in directories]
    assert {mode(p) for p in files} == {0o600}, [(p, oct(mode(p))) for p in files]


def test_a_log_file_is_0600_new_rotated_or_found_loose(tmp_path: Path) -> None:
    """Whatever the umask of whoever runs the supervisor."""
    loose = tmp_path / "server.log"
    loose.write_text("old\n")
    loose.chmod(0o644)
    log = RotatingLog(loose, max_bytes=100, backups=2)
    for number in range(10):
        log.write(f"line {number} ".ljust(40).encode() + b"\n")
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "server.log",
        "server.log.1",
        "server.log.2",
    ]
    assert {mode(p) for p in tmp_path.iterdir()} == {0o600}
    fresh = RotatingLog(tmp_path / "new" / "admin.log")
    fresh.write(b"x\n")
    fresh.close()
    assert (mode(tmp_path / "new"), mode(tmp_path / "new" / "admin.log")) == (0o700, 0o600)
