"""The mutation score of the money code, read from mutmut's results in mutants/.

scripts/mutation_money.sh runs mutmut over a named set of mutants (the money code; only
`advance` of store/checkouts.py); mutmut's own summary counts every mutant of every file it
generated, so the score is worked out here from its per-file `.meta` results, for exactly the
mutants in scope. Run from the repository root, with the venv's python (it imports mutmut to
print each survivor's diff).

    python scripts/mutation_score.py report GLOB...     the score, survivors with their diffs
    python scripts/mutation_score.py survivors GLOB...  survivor names, one a line
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# mutmut's exit codes (mutmut/stats.py): the kills, and what a run that finished never leaves.
KILLED = frozenset({1, 3, -24, 24, 36, 152, 255})  # a failing test, or a timeout (it hung)
SURVIVED = 0
UNFINISHED = frozenset({None, 2})  # not checked, or interrupted


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    path: Path
    exit_code: int | None

    @property
    def status(self) -> str:
        if self.exit_code in KILLED:
            return "killed"
        if self.exit_code == SURVIVED:
            return "survived"
        if self.exit_code in UNFINISHED:
            return "not checked"
        if self.exit_code in (5, 33):
            return "no tests"
        return f"other ({self.exit_code})"


def results(mutants: Path, globs: list[str]) -> list[Result]:
    """Every mutant whose name matches one of `globs`, with its last result."""
    found = []
    for meta in sorted(mutants.rglob("*.py.meta")):
        source = meta.relative_to(mutants).with_suffix("")
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        found += [
            Result(name, source, code)
            for name, code in codes.items()
            if any(fnmatch.fnmatchcase(name, glob) for glob in globs)
        ]
    return found


def _diff(result: Result) -> str:
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    try:
        return get_diff_for_mutant(result.name, path=result.path)
    except Exception as exc:  # a diff is a courtesy: the score stands without it
        return f"(no diff: {type(exc).__name__}: {exc})"


def report(found: list[Result]) -> int:
    by_status = Counter(r.status for r in found)
    per_file: dict[Path, Counter[str]] = {}
    for r in found:
        per_file.setdefault(r.path, Counter())[r.status] += 1
    survivors = [r for r in found if r.status != "killed"]
    for r in survivors:
        print(f"=== {r.name}: {r.status}")
        print(_diff(r).rstrip())
    print()
    for path, counts in per_file.items():
        total = sum(counts.values())
        print(f"{path}: {counts['killed']}/{total} killed", dict(sorted(counts.items())))
    total = len(found)
    killed = by_status["killed"]
    score = 100 * killed / total if total else 0.0
    summary = dict(sorted(by_status.items()))
    print(f"mutation score: {killed}/{total} killed ({score:.1f}%)", summary)
    if by_status["not checked"]:
        print(f"error: {by_status['not checked']} mutants were never checked", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("report", "survivors"))
    parser.add_argument("globs", nargs="+", help="mutant names in scope (fnmatch patterns)")
    parser.add_argument("--mutants", type=Path, default=Path("mutants"))
    args = parser.parse_args(argv)
    found = results(args.mutants, args.globs)
    if not found:
        print(f"error: no mutant in {args.mutants} matches {args.globs}", file=sys.stderr)
        return 2
    if args.command == "survivors":
        print("\n".join(r.name for r in found if r.status != "killed"))
        return 0
    return report(found)


if __name__ == "__main__":
    sys.exit(main())
