#!/usr/bin/env bash
# Mutation testing of the money code: do the tests pin down every line that moves a balance?
#
# Mutates billing.py, store/ledger.py, store/reversals.py, store/checkouts.py (advance only),
# payments/stripe_provider.py and daemon/webhooks.py with mutmut 3 ([tool.mutmut] in
# pyproject.toml names the files and the tests), runs each mutant against the tests that cover
# it, and prints the score (killed / total) and every survivor with its diff.
#
#   scripts/mutation_money.sh [--max-children N] [--survivors]
#
#   --max-children N  parallel mutant workers (default 2)
#   --survivors       re-test only the last run's survivors (after adding tests); otherwise
#                     mutants/ is wiped and every mutant is tested afresh
#
# mutmut works in mutants/ (gitignored): a copy of hero_onboarding/ and tests/. It is left in
# place after a run so `.venv/bin/mutmut show NAME` and `mutmut browse` can read it.
# Exit status: 0 when the run completed (survivors are printed, not failed on); non-zero when
# the tooling failed (no venv, mutmut missing, the clean test run failing, mutants unchecked).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MAX_CHILDREN=2
ONLY_SURVIVORS=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --max-children) MAX_CHILDREN="$2"; shift 2 ;;
    --survivors) ONLY_SURVIVORS=1; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done

PY="$ROOT/.venv/bin/python"
if [[ ! -x "$PY" ]]; then
  echo "creating .venv (python3 -m venv)" >&2
  python3 -m venv .venv
fi
if [[ ! -x "$ROOT/.venv/bin/mutmut" ]]; then
  echo "installing the test extra (mutmut with it)" >&2
  "$PY" -m pip install -q -e '.[test]'
fi

# The mutants in scope, by mutmut's names: whole modules, and of checkouts.py only advance.
SCOPE=(
  'hero_onboarding.billing.*'
  'hero_onboarding.store.ledger.*'
  'hero_onboarding.store.reversals.*'
  'hero_onboarding.store.checkouts.x_advance__mutmut_*'
  'hero_onboarding.payments.stripe_provider.*'
  'hero_onboarding.daemon.webhooks.*'
)

if [[ $ONLY_SURVIVORS -eq 1 ]]; then
  [[ -d mutants ]] || { echo "no mutants/ from an earlier run" >&2; exit 2; }
  mapfile -t TARGETS < <("$PY" scripts/mutation_score.py survivors "${SCOPE[@]}")
  if [[ ${#TARGETS[@]} -eq 0 ]]; then
    echo "no survivors to re-test"
    exec "$PY" scripts/mutation_score.py report "${SCOPE[@]}"
  fi
  rm -rf mutants/tests  # stale copies of tests that no longer exist must not run
else
  rm -rf mutants
  TARGETS=("${SCOPE[@]}")
fi

started=$(date +%s)
status=0
log="$(mktemp)"
"$ROOT/.venv/bin/mutmut" run --max-children "$MAX_CHILDREN" "${TARGETS[@]}" \
  > "$log" 2>&1 || status=$?
mkdir -p mutants && mv "$log" mutants/run.log
elapsed=$(( $(date +%s) - started ))
if [[ $status -ne 0 ]]; then
  tail -n 40 mutants/run.log >&2 || true
  echo "mutmut run failed (exit $status); its output is in mutants/run.log" >&2
  exit "$status"
fi

"$PY" scripts/mutation_score.py report "${SCOPE[@]}"
echo "mutmut run took ${elapsed} s with ${MAX_CHILDREN} workers"
