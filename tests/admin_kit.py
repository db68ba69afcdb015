"""The admin daemon as tests meet it: the real app on a real Unix socket, and a client."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from hero_onboarding.admin.methods import AdminContext, build_registry
from hero_onboarding.admin.server import SERVICE
from hero_onboarding.payments.base import Reconciler
from hero_onboarding.rpc.client import RpcClient
from hero_onboarding.rpc.registry import Registry
from hero_onboarding.rpc.server import bind_unix_socket, create_rpc_app, serving_on_socket


def short_socket_dir() -> Path:
    """Unix socket paths must fit in 107 bytes; pytest's tmp_path often does not.

    Removed when the test run ends.
    """
    path = Path(tempfile.mkdtemp(prefix="hs", dir="/tmp"))
    _MADE.append(path)
    return path


_MADE: list[Path] = []


@atexit.register
def _remove_made() -> None:
    for path in _MADE:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class AdminHandle:
    client: RpcClient
    socket_path: Path


@asynccontextmanager
async def running_rpc(registry: Registry, socket_path: Path) -> AsyncIterator[AdminHandle]:
    app = create_rpc_app(registry, SERVICE)
    bound = bind_unix_socket(socket_path)
    try:
        async with (
            serving_on_socket(app, bound, shutdown_timeout_s=1),
            RpcClient(socket_path) as client,
        ):
            yield AdminHandle(client, socket_path)
    finally:
        bound.release()


@asynccontextmanager
async def running_admin(
    settings, store, *, reconciler: Reconciler | None = None, clock=None
) -> AsyncIterator[AdminHandle]:
    ctx = AdminContext(settings, store, reconciler, **({"clock": clock} if clock else {}))
    async with running_rpc(build_registry(ctx), settings.admin_socket_path) as handle:
        yield handle
