"""The crash proof, smaller: scripts/crash_test.py against the real CLI-run service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.process, pytest.mark.slow]  # real processes, for seconds each

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "crash_test.py"


def test_payments_acknowledged_through_kills_are_credited_exactly_once() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--clients",
            "3",
            "--events",
            "60",
            "--kills",
            "2",
            "--deadline",
            "120",
        ],  # within the timeout below: the script always stops the service
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SIGKILL 2/2" in result.stdout
    assert result.stdout.rstrip().endswith("exactly-once: OK")
    assert "FAIL" not in result.stdout
    assert " 0 refused or cut" not in result.stdout  # the kills did interrupt deliveries
