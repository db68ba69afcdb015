"""`python -m hero_onboarding` is the same as the `hero-onboarding` console script.

The supervisors start the daemons this way. A daemon talks to Stripe only through the SDK's
aiohttp client, but the SDK imports `requests` when it loads, just to pick a default sync client
(5 MiB of RSS per daemon, measured by scripts/bench_start.py): hidden from the daemons, the SDK
falls back to naming its urllib client, which is never built either. Commands run by people
(`stripe-setup` uses the sync client) keep `requests`.
"""

import sys

DAEMONS = frozenset({"server", "admin", "sandbox"})

if sys.argv[1:2] and sys.argv[1] in DAEMONS:
    sys.modules.setdefault("requests", None)  # type: ignore[arg-type]  # None: "not importable"

from .control.cli import main  # noqa: E402

main()
