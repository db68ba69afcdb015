"""`hero-onboarding supervise`: the built-in supervisor's process (what `--start` launches)."""

from __future__ import annotations

import asyncio
import os
from typing import Final

import click

from ..config import load_settings
from .daemons import plan
from .errors import CommandFailed
from .identity import LockHeld
from .logs import configure_logging
from .private_files import make_private
from .sandbox_keys import load_or_create
from .supervisor import BACKOFF_FIRST_S, BACKOFF_MAX_S, RestartPolicy, Supervisor

# Not a Settings field: no operator needs another restart backoff than the default, and a
# setting would be a flag on every command and a variable in every daemon's environment. The
# tests that watch the supervisor give up set this variable for --start, whose environment
# the supervisor inherits.
BACKOFF_ENV: Final = "HERO_ONBOARDING_SUPERVISOR_BACKOFF_FIRST_S"


@click.command("supervise", hidden=True)
@click.option("--sandbox", is_flag=True, help="Also run the local Stripe sandbox.")
@click.option(
    "--backoff-first-s",
    type=click.FloatRange(min=0.01, max=BACKOFF_MAX_S),
    default=BACKOFF_FIRST_S,
    envvar=BACKOFF_ENV,
    hidden=True,
    help="The first restart delay (doubling up to 30 s); for tests.",
)
def supervise_command(sandbox: bool, backoff_first_s: float) -> None:
    """Run the daemons as children until SIGTERM (settings from HERO_ONBOARDING_*)."""
    settings = load_settings(os.environ)
    configure_logging(settings.log_level, "supervisor", settings.log_format)
    make_private((settings.data_dir, settings.logs_dir, settings.run_dir), create=True)
    if sandbox:
        load_or_create(settings.data_dir)
    policy = RestartPolicy(first_delay_s=backoff_first_s)
    supervisor = Supervisor(
        settings, plan(settings, sandbox=sandbox), sandbox=sandbox, policy=policy
    )
    try:
        asyncio.run(supervisor.run())
    except LockHeld:
        raise CommandFailed(f"a supervisor already runs for {settings.data_dir}") from None
