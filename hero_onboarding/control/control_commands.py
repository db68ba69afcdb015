"""What `--start`, `--stop`, `--status` and `--restart` print, and the exit code they end with."""

from __future__ import annotations

import asyncio
import json
import os

import click

from ..config import Settings
from . import service
from .errors import EXIT_FAILURE, EXIT_NOT_RUNNING, EXIT_OK
from .service_state import ServiceState
from .states import AUTO, BACKEND_CHOICES, BackendKind

__all__ = ["BACKEND_CHOICES", "control"]


def control(action: str, settings: Settings, *, sandbox: bool, backend: str, as_json: bool) -> int:
    """Run one of --start/--stop/--status/--restart; `backend` is a BACKEND_CHOICES word."""
    env = dict(os.environ)
    wanted = None if backend == AUTO else BackendKind(backend)
    if action == "--status":
        state = asyncio.run(service.current_state(settings, env))
        click.echo(json.dumps(state.as_json(), indent=1) if as_json else describe(state))
        if not state.running:
            return EXIT_NOT_RUNNING
        return EXIT_OK if state.healthy else EXIT_FAILURE
    if action == "--stop":
        stopped = asyncio.run(service.stop(settings, env))
        click.echo("stopped" if stopped else "not running; nothing to stop")
        return EXIT_OK
    if action == "--restart":
        state = asyncio.run(
            service.restart(
                settings,
                env,
                sandbox=sandbox or None,  # without --sandbox: as it ran before
                backend=wanted,
            )
        )
        click.echo(describe(state))
        return EXIT_OK
    state, started = asyncio.run(service.start(settings, env, sandbox=sandbox, backend=wanted))
    if started:
        click.echo(describe(state))
        click.echo(f"stop it with: hero-onboarding --stop (data dir {settings.data_dir})")
        return EXIT_OK
    click.echo("already running" + ("" if state.healthy else ", but not healthy"))
    if state.sandbox != sandbox:
        click.echo(
            f"(in {'sandbox' if state.sandbox else 'production'} mode; --stop, then --start"
            f"{' --sandbox' if sandbox else ''} to change that)"
        )
    click.echo(describe(state))
    return EXIT_OK if state.healthy else EXIT_FAILURE


def describe(state: ServiceState) -> str:
    if not state.running:
        return "hero-onboarding is not running"
    mode = ", sandbox mode" if state.sandbox else ""
    supervisor = f" pid {state.supervisor_pid}" if state.supervisor_pid else ""
    lines = [
        f"hero-onboarding is running under {state.backend}{supervisor}{mode}"
        + (f" ({state.note})" if state.note else ""),
        f"  public URL:   {state.public_url}",
        f"  admin socket: {state.admin_socket}",
    ]
    for daemon in state.daemons:
        figures = [
            f"pid {daemon.pid}" if daemon.pid else "no process",
            f"up {_duration(daemon.uptime_s)}" if daemon.uptime_s is not None else "",
            f"rss {daemon.rss_bytes / 2**20:.1f} MiB" if daemon.rss_bytes else "",
            f"restarts {daemon.restarts}",
            f"health {daemon.health}",
        ]
        line = f"  {daemon.name:<8} {daemon.state:<9} " + "  ".join(f for f in figures if f)
        lines.append(line + (f"  ({daemon.note})" if daemon.note else ""))
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
