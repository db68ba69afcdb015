"""The built wheel is what an operator installs: it must carry every file the package needs and run.

The editable install the suite runs from reads templates, static files and the sandbox's JSON
straight from the source tree, so it would never notice a file left out of the wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.control_kit import Install
from tests.processes import HERMETIC

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "scripts" / "smoke_stripe_sandbox.sh"

pytestmark = [pytest.mark.process, pytest.mark.slow]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = out.glob("hero_onboarding-*.whl")
    return found


def tracked_package_files() -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", "hero_onboarding"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {name for name in listed if not name.endswith("__pycache__")}


def test_the_wheel_carries_every_file_of_the_package_and_the_license(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    tracked = tracked_package_files()
    # The files the editable install would hide a loss of: templates, static files, JSON.
    assert {n for n in tracked if n.endswith((".html", ".css", ".json"))}, "nothing to check"
    assert tracked - names == set()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "hero_onboarding/py.typed" in names
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(
            archive.read(n).decode() for n in names if n.endswith(".dist-info/METADATA")
        )
    assert "License-Expression: Apache-2.0" in metadata
    assert "Classifier: Typing :: Typed" in metadata


@pytest.fixture
def fresh_env(tmp_path: Path, wheel: Path) -> Path:
    """A new virtualenv holding only the wheel; its dependencies come from the suite's venv.

    The suite's site-packages is added as a plain path (no `.pth` processing), so its editable
    finder for the source tree never loads: `hero_onboarding` can only come from the wheel.
    """
    env_dir = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    fresh_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(fresh_site, "suite_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    installed = subprocess.run(
        [*pip, "install", "--quiet", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return env_dir


@pytest.fixture
def install(tmp_path: Path) -> Iterator[Install]:
    installed = Install.in_tmp(tmp_path)
    yield installed
    installed.stop_all()


def test_the_installed_wheel_runs_the_sandbox_round_trip(
    fresh_env: Path, install: Install, tmp_path: Path
) -> None:
    cli = str(fresh_env / "bin" / "hero-onboarding")
    env = {**os.environ, **HERMETIC, **install.env}
    where = subprocess.run(
        [
            str(fresh_env / "bin" / "python"),
            "-c",
            "import hero_onboarding; print(hero_onboarding.__file__)",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(fresh_env)), where
    version = subprocess.run([cli, "--version"], capture_output=True, text=True, check=True)
    assert "0.0.0+unknown" not in version.stdout  # the version comes from the wheel's metadata
    # Started from a directory outside the source tree, so nothing can import it by accident.
    started = subprocess.run(
        [cli, "--start", "--sandbox"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    daemons = [p for p in install.processes() if "hero_onboarding" in " ".join(p.cmdline())]
    assert daemons
    assert all(p.cmdline()[0].startswith(str(fresh_env)) for p in daemons)
    smoke = subprocess.run(
        [str(SMOKE), "--cli", cli], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=180, check=False,
    )  # fmt: skip
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert smoke.stdout.splitlines()[-1] == "4 of 4 checks passed"
