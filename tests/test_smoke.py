"""scripts/smoke_stripe_sandbox.sh, as an operator runs it against `--start --sandbox`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.control_kit import Install
from tests.processes import HERMETIC

pytestmark = pytest.mark.process  # every test here starts real processes

SMOKE = Path(__file__).resolve().parents[1] / "scripts" / "smoke_stripe_sandbox.sh"


@pytest.fixture
def install(tmp_path: Path) -> Iterator[Install]:
    installed = Install.in_tmp(tmp_path)
    yield installed
    installed.stop_all()


def smoke(install: Install) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SMOKE)],
        env={**os.environ, **HERMETIC, **install.env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_the_smoke_script_passes_every_check_against_the_sandbox(install: Install) -> None:
    assert install.cli("--start", "--sandbox").returncode == 0
    result = smoke(install)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for check in (
        "PASS  checkout round trip with 4242: balance 0.00 USD -> 10.00 USD",
        "PASS  duplicate webhook credits nothing: HTTP 200",
        "PASS  tampered webhook is refused: HTTP 401",
        "PASS  balance kept across --stop and --start: balance 10.00 USD -> 10.00 USD",
    ):
        assert any(line.startswith(check) for line in lines), check
    assert lines[-1] == "4 of 4 checks passed"
    assert install.status()["healthy"]  # it restarted the service, and left it running


def test_a_check_that_cannot_run_is_a_fail_line_not_a_traceback(install: Install) -> None:
    assert install.cli("--start", "--sandbox").returncode == 0
    assert install.cli("--stop").returncode == 0  # the keys stay; nobody answers any more
    result = smoke(install)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stdout.splitlines()[0].startswith("FAIL  checkout round trip with 4242: ")
    assert result.stdout.splitlines()[-1] == "0 of 1 checks passed"


def test_the_smoke_script_fails_when_nothing_runs(install: Install) -> None:
    result = smoke(install)
    assert result.returncode != 0
    assert "run hero-onboarding --start --sandbox" in result.stderr
