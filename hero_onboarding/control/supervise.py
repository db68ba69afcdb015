"""`hero-onboarding supervise`: the built-in supervisor's process (what `--start` launches)."""

from __future__ import annotations

import asyncio
import os

import click

from ..config import load_settings
from .daemons import plan
from .errors import CommandFailed
from .identity import LockHeld
from .logs import configure_logging
from .private_files import make_private
from .sandbox_keys import load_or_create
from .supervisor import Supervisor


@click.command("supervise", hidden=True)
@click.option("--sandbox", is_flag=True, help="Also run the local Stripe sandbox.")
def supervise_command(sandbox: bool) -> None:
    """Run the daemons as children until SIGTERM (settings from HERO_ONBOARDING_*)."""
    settings = load_settings(os.environ)
    configure_logging(settings.log_level, "supervisor", settings.log_format)
    make_private((settings.data_dir, settings.logs_dir, settings.run_dir), create=True)
    if sandbox:
        load_or_create(settings.data_dir)
    supervisor = Supervisor(settings, plan(settings, sandbox=sandbox), sandbox=sandbox)
    try:
        asyncio.run(supervisor.run())
    except LockHeld:
        raise CommandFailed(f"a supervisor already runs for {settings.data_dir}") from None
