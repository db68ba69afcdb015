"""`hero-onboarding rpc METHOD [JSON_PARAMS]`: call the admin daemon, print the result.

Exit 0 with the result as indented JSON; exit 1 with the JSON-RPC error on one line; exit 2 when
the parameters are not a JSON object, no daemon answers on the socket, or the one answering
runs as another user (neither ours nor root: refused before anything is sent, see
docs/local-trust.md).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import click

from ..config import ConfigError, load_settings
from ..rpc.client import RpcClient, RpcError, UntrustedServer
from .errors import CommandFailed, NothingToTalkTo


@click.command(name="rpc")
@click.argument("method")
@click.argument("params", required=False)
@click.option(
    "--socket", "socket_path", type=click.Path(path_type=Path), default=None,
    help="The admin socket [default: $HERO_SOCKET_DIR/hero_onboarding_admin/rpc.sock].",
)  # fmt: skip
@click.option(
    "--timeout", type=click.FloatRange(1, 3600), default=120.0, show_default=True,
    help="Seconds to wait for the answer (reconcile over a long period can take a while).",
)  # fmt: skip
def rpc_command(method: str, params: str | None, socket_path: Path | None, timeout: float) -> None:
    """Call METHOD on the admin daemon with PARAMS (a JSON object) and print the result.

    Example: hero-onboarding rpc billing_adjust '{"sid": "...", "amount": 500,
    "reason": "goodwill", "idempotency_key": "ticket-1234"}'. `rpc rpc.discover` lists methods.
    """
    arguments = _parse(params)
    path = socket_path or load_settings(os.environ, {}).admin_socket_path
    if not path.exists():
        raise NothingToTalkTo(
            f"no admin daemon socket at {path} (is `hero-onboarding admin` running?)"
        )
    result = asyncio.run(_call(path, method, arguments, timeout))
    click.echo(json.dumps(result, indent=2, sort_keys=True))


def _parse(params: str | None) -> dict[str, Any] | None:
    if params is None:
        return None
    try:
        value = json.loads(params)
    except ValueError as exc:
        raise ConfigError(f"PARAMS is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError('PARAMS must be a JSON object, e.g. \'{"sid": "..."}\'')
    return value


async def _call(path: Path, method: str, params: dict[str, Any] | None, timeout_s: float) -> Any:
    try:
        async with RpcClient(path, timeout_s=timeout_s) as client:
            return await client.call(method, params)
    except TimeoutError:
        raise CommandFailed(
            f"{method}: no answer within {timeout_s:g} s; it may still finish (see `rpc info`)"
        ) from None
    except RpcError as exc:
        raise CommandFailed(f"{method}: {exc.message} ({exc.code})") from None
    except UntrustedServer as exc:
        raise NothingToTalkTo(str(exc)) from None
    except (aiohttp.ClientConnectionError, FileNotFoundError) as exc:
        raise NothingToTalkTo(f"no admin daemon answers on {path}: {exc}") from None
