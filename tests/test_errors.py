"""The exception tree (hero_onboarding/errors.py, docs/errors.md): one base for every class,
the codes each documents, and cli.main mapping by them."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import pkgutil
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import hero_onboarding
from hero_onboarding import errors
from hero_onboarding.admin.schemas import PROVIDER_DOWN, RUN_IN_PROGRESS, UNAVAILABLE
from hero_onboarding.control import cli
from hero_onboarding.errors import CommandError, HeroOnboardingError, SetupError
from hero_onboarding.mycelium.address import AddressError
from hero_onboarding.payments.base import ProviderError
from hero_onboarding.rpc.errors import INVALID_PARAMS
from hero_onboarding.store.db import StoreError
from hero_onboarding.store.reconcile_runs import LeaseHeld

ROOT = Path(hero_onboarding.__file__).parent
DOC = ROOT.parent / "docs" / "errors.md"
E = "hero-onboarding: error: "
RunMain = Callable[[Exception], tuple[int, str]]
# What cli.main has always answered for each error that reaches it; every other class of ours
# reaching it is a bug, reported as "unexpected error" with exit 1.
EXIT_CODES = {
    "ConfigError": 2,
    "SecretsError": 2,
    "NothingToTalkTo": 2,
    "SetupError": 2,
    "StartupError": 1,
    "CommandFailed": 1,
    "HeroProcError": 1,
    "HeroProcUnavailable": 1,
    "CommandError": 1,
}


def exception_classes() -> list[type[BaseException]]:
    """Every exception class defined in a module of the package (the CLI entry excluded:
    importing __main__ runs it)."""
    found = []
    for module in pkgutil.walk_packages(hero_onboarding.__path__, "hero_onboarding."):
        if module.name.endswith("__main__"):
            continue
        for value in vars(importlib.import_module(module.name)).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.name
            ):
                found.append(value)
    return found


def test_every_exception_class_of_the_package_derives_from_the_base() -> None:
    classes = exception_classes()
    assert len(classes) > 20  # the walk found them (29 when the tree was made)
    outside = [
        f"{c.__module__}.{c.__qualname__}"
        for c in classes
        if not issubclass(c, HeroOnboardingError)
    ]
    assert outside == []


def test_the_errors_module_is_a_leaf() -> None:
    """Importable from every layer: it imports nothing of the package."""
    tree = ast.parse(Path(errors.__file__).read_text())
    imported = [
        node.module or "" if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    relative = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level > 0]
    assert relative == []
    assert not [name for name in imported if name.startswith("hero_onboarding")]


def test_exit_codes_are_the_ones_cli_main_always_gave() -> None:
    given = {
        c.__name__: c.exit_code
        for c in exception_classes()
        if issubclass(c, HeroOnboardingError) and c.exit_code is not None
    }
    assert given == EXIT_CODES


def test_documented_json_rpc_codes_are_the_ones_the_admin_daemon_answers() -> None:
    assert StoreError.rpc_code == UNAVAILABLE.code
    assert ProviderError.rpc_code == PROVIDER_DOWN.code
    assert LeaseHeld.rpc_code == RUN_IN_PROGRESS.code
    assert AddressError.rpc_code == INVALID_PARAMS


def test_docs_name_every_class() -> None:
    text = DOC.read_text()
    named = set(re.findall(r"\b[A-Z]\w+\b", text))
    missing = [c.__name__ for c in exception_classes() if c.__name__ not in named]
    assert missing == []


@pytest.fixture
def run_main(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[RunMain]:
    """cli.main(["--status"]) with the command raising `error`; (exit code, stderr)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    umask = os.umask(0o022)
    os.umask(umask)

    def run(error: Exception) -> tuple[int, str]:
        def failing(*args: object, **kwargs: object) -> int:
            raise error

        monkeypatch.setattr(cli, "control", failing)
        with pytest.raises(SystemExit) as exited:
            cli.main(["--status"])
        return int(exited.value.code or 0), capsys.readouterr().err

    yield run
    os.umask(umask)  # main sets 077 for the process


def test_a_new_error_needs_no_edit_in_cli(run_main: RunMain) -> None:
    class BrandNewSetupProblem(SetupError):
        pass

    class BrandNewFailure(CommandError, exit_code=7):
        pass

    assert run_main(BrandNewSetupProblem("fix that")) == (2, f"{E}fix that\n")
    assert run_main(BrandNewFailure("it broke")) == (7, f"{E}it broke\n")


def test_one_of_ours_without_an_exit_code_is_reported_as_a_bug(run_main: RunMain) -> None:
    code, stderr = run_main(StoreError("disk gone"))
    assert (code, stderr) == (1, f"{E}unexpected error: StoreError: disk gone\n")
    assert run_main(KeyError("x")) == (1, f"{E}unexpected error: KeyError: 'x'\n")
