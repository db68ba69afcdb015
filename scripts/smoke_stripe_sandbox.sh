#!/usr/bin/env bash
# The operator's smoke test of a running hero-onboarding: a Checkout round trip with 4242,
# a duplicate webhook, a tampered webhook, and the balance across --restart. PASS/FAIL per check;
# exit 0 only if all pass. Settings come from HERO_ONBOARDING_* as for the service itself.
#
#   hero-onboarding --start --sandbox && scripts/smoke_stripe_sandbox.sh
#   scripts/smoke_stripe_sandbox.sh --real-stripe   # Stripe test mode: see the README
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-$here/../.venv/bin/python}
exec "$python" "$here/smoke_stripe_sandbox.py" "$@"
