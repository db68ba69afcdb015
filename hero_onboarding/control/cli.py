"""`hero-onboarding`: the one entry point operators and service units use."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from functools import partial
from typing import Any, Final, NoReturn

import click

from .. import __version__
from ..config import (
    Secrets,
    env_name,
    flag_name,
    load_settings,
    setting_help,
    setting_names,
)
from ..errors import HeroOnboardingError
from .check import check_command
from .control_commands import BACKEND_CHOICES, control
from .errors import (
    EXIT_FAILURE,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_USAGE,
)
from .foreground import run_until_signalled
from .login_proof import login_proof_command
from .logs import configure_logging
from .private_files import PRIVATE_UMASK, make_private
from .rpc_command import rpc_command
from .sandbox import sandbox_command
from .secrets import SECRET_KEY, resolve, server_secrets
from .states import AUTO
from .supervise import supervise_command

PROG: Final = "hero-onboarding"


EXIT_CODES_HELP: Final = f"""\b
Exit codes:
  {EXIT_OK}  success
  {EXIT_FAILURE}  the command failed (a daemon could not start, an RPC call answered an error)
  {EXIT_USAGE}  bad usage, an invalid setting, a missing secret, or no daemon to talk to
  {EXIT_NOT_RUNNING}  --status: the service is not running ({EXIT_FAILURE}: running, but a daemon is
     down or not answering /health)

\b
Every setting can also come from a HERO_ONBOARDING_<NAME> environment variable;
a flag wins over the variable.
"""


def settings_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """One string flag per Settings field; config.load_settings parses and validates them."""
    for name in reversed(setting_names()):
        command = click.option(
            flag_name(name),
            name,
            default=None,
            metavar="VALUE",
            help=f"{setting_help(name)} [env {env_name(name)}]",
        )(command)
    return command


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES_HELP,
    invoke_without_command=True,
)
@click.version_option(__version__, prog_name=PROG)
@click.option("--start", is_flag=True, help="Start the daemons, supervised; return once healthy.")
@click.option("--stop", is_flag=True, help="Stop them; return once every process is gone.")
@click.option("--status", is_flag=True, help="Each daemon's state, pid, uptime, RSS, health.")
@click.option("--restart", is_flag=True, help="--stop, then --start.")
@click.option("--sandbox", is_flag=True, help="With --start: add the local Stripe sandbox.")
@click.option(
    "--backend",
    type=click.Choice(BACKEND_CHOICES),
    default=AUTO,
    show_default=True,
    help="Supervise under hero_proc, or the built-in supervisor (auto: hero_proc if it answers).",
)
@click.option("--json", "as_json", is_flag=True, help="With --status: one JSON object.")
@settings_options
@click.pass_context
def cli(
    ctx: click.Context,
    /,
    start: bool,
    stop: bool,
    status: bool,
    restart: bool,
    sandbox: bool,
    backend: str,
    as_json: bool,
    **flags: str | None,
) -> None:
    """Hero onboarding: Mycelium login, prepaid credits through Stripe, balances.

    `hero-onboarding --start --sandbox` runs the whole service locally with a Stripe sandbox;
    `--stop` stops it. Settings flags given here apply to --start/--stop/--status/--restart.
    """
    actions = [name for name, given in
               (("--start", start), ("--stop", stop), ("--status", status), ("--restart", restart))
               if given]  # fmt: skip
    if ctx.invoked_subcommand is not None:
        if actions or any(value is not None for value in flags.values()):
            raise click.UsageError(
                f"{(actions or ['settings flags'])[0]} cannot come before a command; "
                "give settings after the command's name"
            )
        return
    if len(actions) > 1:
        raise click.UsageError(f"give one of {', '.join(actions)}, not several")
    if not actions:
        click.echo(ctx.get_help())
        return
    settings = load_settings(os.environ, flags)
    exit_code = control(actions[0], settings, sandbox=sandbox, backend=backend, as_json=as_json)
    ctx.exit(exit_code)


@cli.command(epilog=EXIT_CODES_HELP)
@settings_options
def server(**flags: str | None) -> None:
    """Run the public web daemon in the foreground (what service units exec).

    With --provider=stripe (the default) it needs STRIPE_SANDBOX_SECRET_KEY and
    STRIPE_WEBHOOK_SIGNING_KEY (comma-separated to accept several during a rotation);
    --provider=stub needs neither. Stops cleanly on SIGTERM or SIGINT.
    """
    from ..daemon.server import serve  # here: --status and the supervisor need none of it

    settings = load_settings(os.environ, flags)
    configure_logging(settings.log_level, "server", settings.log_format)
    make_private((settings.data_dir,), create=False)
    lookup = resolve(os.environ, sandbox_mode=settings.mode == "sandbox")
    secrets = server_secrets(lookup, provider=settings.provider)
    run_until_signalled(partial(serve, settings, secrets))


cli.add_command(sandbox_command)
cli.add_command(login_proof_command)


@cli.command(epilog=EXIT_CODES_HELP)
@settings_options
def admin(**flags: str | None) -> None:
    """Run the admin daemon (JSON-RPC on a Unix socket) in the foreground.

    Answers on $HERO_SOCKET_DIR/hero_onboarding_admin/rpc.sock (mode 0600). With
    STRIPE_SANDBOX_SECRET_KEY set, `reconcile` asks Stripe for paid checkouts.
    """
    from ..admin.server import serve_admin  # here: --status and the supervisor need none of it

    settings = load_settings(os.environ, flags)
    configure_logging(settings.log_level, "admin", settings.log_format)
    make_private((settings.data_dir,), create=False)
    lookup = resolve(os.environ, (SECRET_KEY,), sandbox_mode=settings.mode == "sandbox")
    secrets = Secrets(stripe_secret_key=lookup.get(SECRET_KEY))
    run_until_signalled(partial(serve_admin, settings, secrets))


@cli.command("stripe-setup", epilog=EXIT_CODES_HELP)
@click.option("--dry-run", is_flag=True, help="Say what would change, and change nothing.")
@click.option(
    "--recreate",
    is_flag=True,
    help="Delete the endpoint(s) at the URL and create one anew (it gets a new signing secret).",
)
@settings_options
def stripe_setup(dry_run: bool, recreate: bool, **flags: str | None) -> None:
    """Create or update the Stripe webhook endpoint <public-url>/webhooks/stripe.

    It gets exactly the event types this service handles, in the API version it pins; run it
    again any time, it changes only what differs. STRIPE_SANDBOX_SECRET_KEY is the account's
    key (sk_test_ or sk_live_); --stripe-api-base points it at the local sandbox. A new
    endpoint's signing secret is printed once, on stdout: store it as
    STRIPE_WEBHOOK_SIGNING_KEY. See docs/stripe-test-mode.md.
    """
    from .stripe_setup import run  # here: other commands need none of it

    settings = load_settings(os.environ, flags)
    lookup = resolve(os.environ, (SECRET_KEY,), sandbox_mode=settings.mode == "sandbox")
    run(settings, lookup, dry_run=dry_run, recreate=recreate)


cli.add_command(rpc_command)
cli.add_command(supervise_command)
cli.add_command(check_command)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry: one line on stderr and a documented exit code for every failure.

    umask 077 first, before any command creates anything: the data directory, the logs and
    the run directory are this user's alone (see docs/local-trust.md).
    """
    os.umask(PRIVATE_UMASK)
    try:
        returned = cli.main(args=argv, prog_name=PROG, standalone_mode=False)
        if isinstance(returned, int):  # click hands back ctx.exit(code) when not standalone
            sys.exit(returned)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        _fail(EXIT_USAGE if exc.exit_code == 2 else EXIT_FAILURE, exc.format_message())
    except click.exceptions.Abort:
        _fail(EXIT_FAILURE, "aborted")
    except HeroOnboardingError as exc:  # each says its exit code (hero_onboarding/errors.py)
        if exc.exit_code is None:  # one that should have been handled before reaching here
            _unexpected(exc)
        _fail(exc.exit_code, str(exc))
    except KeyboardInterrupt:
        _fail(EXIT_FAILURE, "interrupted")
    except Exception as exc:
        _unexpected(exc)
    sys.exit(EXIT_OK)


def _unexpected(exc: Exception) -> NoReturn:
    """A bug: say what, keep the traceback for --log-level debug."""
    logging.getLogger(__name__).debug("unexpected error", exc_info=True)
    _fail(EXIT_FAILURE, f"unexpected error: {type(exc).__name__}: {exc}")


def _fail(code: int, message: str) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    sys.exit(code)
