"""DESIGN.md's import direction, enforced: pyproject.toml's import-linter contracts must hold.

The contracts are in [tool.importlinter]; these tests run them (so CI fails on a violation),
and show on a copy of the package that each rule really catches the import it forbids.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
PACKAGE = ROOT / "hero_onboarding"
COPY = "layered_copy"  # the copy's name, so the installed package can never shadow it


def contracts() -> dict[str, dict]:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def lint(config: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """import-linter in its own process: in ours it would reconfigure logging for later tests."""
    return subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
         f"sys.exit(lint_imports(config_filename={str(config)!r}, no_cache=True, no_logo=True))"],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip


@pytest.mark.process
def test_the_package_keeps_every_import_contract() -> None:
    ran = lint(PYPROJECT, ROOT)
    report = ran.stdout + ran.stderr
    assert ran.returncode == 0, report
    assert "4 kept, 0 broken" in report


def test_the_leaves_are_exactly_the_modules_the_layers_leave_out() -> None:
    """A module is either in a layer or a leaf (imports nothing of ours): never neither."""
    found = contracts()
    leaves = {name.removeprefix("hero_onboarding.") for name in found["leaves"]["source_modules"]}
    assert set(found["layers"]["exhaustive_ignores"]) == {*leaves, "__main__"}
    layered = {
        name.strip() for layer in found["layers"]["layers"] for name in re.split(r"[|:]", layer)
    }
    forbidden = {
        name.removeprefix("hero_onboarding.") for name in found["leaves"]["forbidden_modules"]
    }
    assert forbidden == layered
    on_disk = {
        path.stem if path.is_file() else path.name
        for path in PACKAGE.iterdir()
        if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists()
    }
    assert on_disk == layered | leaves | {"__main__"}


# Each import below breaks one rule; the copy carries all of them at once.
VIOLATIONS = (
    # (file in the copy, line appended, the import the report must name)
    ("sandbox/app.py", "from ..store import db as _db", f"{COPY}.sandbox.app -> {COPY}.store.db"),
    ("sandbox/page.py", "from .. import billing as _b", f"{COPY}.sandbox.page -> {COPY}.billing"),
    (
        "store/users.py",
        "from ..payments import base as _p",
        f"{COPY}.store.users -> {COPY}.payments",
    ),
    (
        "daemon/pages.py",
        "from ..admin import methods as _m",
        f"{COPY}.daemon.pages -> {COPY}.admin",
    ),
    (
        "rpc/numbers.py",
        "from ..control import errors as _e",
        f"{COPY}.rpc.numbers -> {COPY}.control",
    ),
    ("config.py", "from .serving import listening as _l", f"{COPY}.config -> {COPY}.serving"),
    ("money.py", "from . import config as _c", f"{COPY}.money -> {COPY}.config"),
    (
        "admin/server.py",
        "from ..payments import stub as _s",
        f"{COPY}.admin.server -> {COPY}.payments.stub",
    ),
)


@pytest.mark.process
def test_each_rule_fails_the_run_on_the_import_it_forbids(tmp_path: Path) -> None:
    copy = tmp_path / COPY
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.html", "*.css"))
    for relative, line, _ in VIOLATIONS:
        with (copy / relative).open("a") as module:
            module.write(f"\n{line}  # noqa\n")
    config = tmp_path / "pyproject.toml"
    config.write_text(PYPROJECT.read_text().replace("hero_onboarding", COPY))
    ran = lint(config, tmp_path, PYTHONPATH=str(tmp_path))
    report = ran.stdout + ran.stderr
    assert ran.returncode == 1, report
    assert "0 kept, 4 broken" in report, report
    for _, _, named in VIOLATIONS:
        assert named in report, f"{named} not reported:\n{report}"
