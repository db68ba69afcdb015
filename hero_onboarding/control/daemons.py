"""What `--start` runs: each daemon's command, environment and health check, for any backend.

Settings reach the daemons as `HERO_ONBOARDING_*` variables and secrets as their own variables,
never as arguments, so `ps` shows neither. In sandbox mode the sandbox comes first and the
public daemon is pointed at it, with test keys generated once for this data directory, and
hero_proc is turned off for the daemons so real keys stored there are never used.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final

from ..config import Mode, ProviderName, Settings, env_name
from ..rpc.hero_proc import SOCKET_ENV
from .sandbox_keys import KEYS_FILE_ENV, keys_path

SERVER: Final = "server"
ADMIN: Final = "admin"
SANDBOX: Final = "sandbox"
ALL_DAEMONS: Final = (
    SANDBOX,
    SERVER,
    ADMIN,
)  # start order# How hero_proc (and the status output) names each daemon.
SERVICE_PREFIX: Final = "hero_onboarding_"


@dataclass(frozen=True)
class Health:
    """Where a daemon answers GET /health: a TCP URL, or the admin daemon's Unix socket."""

    url: str | None = None
    socket: Path | None = None


@dataclass(frozen=True)
class DaemonSpec:
    name: str
    service: str  # its name under hero_proc: one per installation
    argv: tuple[str, ...]
    env: dict[str, str]  # added to the supervisor's environment
    health: Health
    after: tuple[str, ...] = ()


def service_name(settings: Settings, daemon: str) -> str:
    """`hero_onboarding_server_1a2b3c4d`: the suffix names the data directory, so two
    installations sharing one hero_proc never stop or report each other's services (the path
    resolved: a symlinked home is the same installation)."""
    digest = hashlib.sha256(str(settings.data_dir.resolve()).encode()).hexdigest()[:8]
    return f"{SERVICE_PREFIX}{daemon}_{digest}"


def settings_env(settings: Settings) -> dict[str, str]:
    """Every setting as the variable a daemon reads it from (paths absolute, as resolved)."""
    values: dict[str, str] = {}
    for field in fields(Settings):
        value = getattr(settings, field.name)
        if value is not None:
            values[env_name(field.name)] = str(value)
    return values


def command(*args: str) -> tuple[str, ...]:
    """This installation's CLI, by the interpreter running now (no PATH lookup)."""
    return (sys.executable, "-m", "hero_onboarding", *args)


def plan(
    settings: Settings, *, sandbox: bool, hero_proc_socket: Path | None = None
) -> list[DaemonSpec]:
    """The daemons to run, in start order.

    `hero_proc_socket` is where the daemons ask for their secrets (the one `--start` asked). In
    sandbox mode they read the generated test keys from their file instead: only its path is
    in their environment, so no key value is ever handed to a supervisor's configuration.
    """
    env = settings_env(settings)
    if hero_proc_socket is not None:
        env[SOCKET_ENV] = str(hero_proc_socket)
    daemons: list[DaemonSpec] = []
    if sandbox:
        env.update(
            {
                KEYS_FILE_ENV: str(keys_path(settings.data_dir)),
                env_name("mode"): Mode.SANDBOX,
                env_name("provider"): ProviderName.STRIPE,
                env_name("stripe_api_base"): settings.sandbox_url,
            }
        )
        sandbox_argv = command(
            "sandbox",
            "--port", str(settings.sandbox_port),
            "--webhook", f"{settings.public_url}/webhooks/stripe",
            "--state-file", str(settings.data_dir / "sandbox-state.json"),
            "--log-level", settings.log_level,
        )  # fmt: skip
        daemons.append(
            DaemonSpec(
                SANDBOX,
                service_name(settings, SANDBOX),
                sandbox_argv,
                env,
                Health(url=f"{settings.sandbox_url}/health"),
            )
        )
    after = (service_name(settings, SANDBOX),) if sandbox else ()
    daemons.append(
        DaemonSpec(
            SERVER,
            service_name(settings, SERVER),
            command("server"),
            env,
            Health(url=f"http://{_local(settings.host)}:{settings.port}/health"),
            after,
        )
    )
    daemons.append(
        DaemonSpec(
            ADMIN,
            service_name(settings, ADMIN),
            command("admin"),
            env,
            Health(socket=settings.admin_socket_path),
            after,
        )
    )
    return daemons


def _local(host: str) -> str:
    """Where to reach a daemon listening on `host` from this machine."""
    if host in ("0.0.0.0", ""):  # noqa: S104 (reading, not binding)
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
