"""The Hero socket spec's HTTP surface for a JSON-RPC service, and its Unix socket.

`POST /rpc` (single, batch, notifications -> 204), `GET /openrpc.json`, `GET /health`,
`GET /.well-known/heroservice.json`; `rpc.discover` answers on /rpc too. Dispatch goes through
jsonrpcserver; each method is wrapped so that its parameters are checked against the registry
first, and so that an unexpected exception becomes -32603 "internal error" with a correlation
id (logged with the traceback, never sent) instead of jsonrpcserver's default, which sends the
exception's text.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import pwd
import socket
import stat
import struct
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from jsonrpcserver import Error, Result, Success, async_dispatch

from ..config import StartupError
from .errors import INTERNAL_ERROR, INVALID_PARAMS, PARSE_ERROR, RpcFault
from .registry import Registry, RpcMethod

log = logging.getLogger(__name__)

MAX_SOCKET_PATH: Final = 107  # sun_path is 108 bytes with its terminating NUL
REQUEST_MAX_BYTES: Final = 1 << 20


@dataclass(frozen=True)
class ServiceInfo:
    name: str  # the socket directory's name, e.g. hero_onboarding_admin
    title: str
    version: str
    description: str


REGISTRY: Final = web.AppKey("rpc_registry", Registry)
SERVICE: Final = web.AppKey("rpc_service", ServiceInfo)
METHODS: Final = web.AppKey("rpc_methods", dict)  # name -> the wrapped callable jsonrpcserver calls


def create_rpc_app(registry: Registry, service: ServiceInfo) -> web.Application:
    """The HTTP app; `registry` gains `rpc.discover`, which returns the OpenRPC document."""

    async def discover() -> dict[str, Any]:
        return openrpc_document(registry, service)

    registry.method("rpc.discover", "The OpenRPC document describing this service.")(discover)
    app = web.Application(client_max_size=REQUEST_MAX_BYTES)
    app[REGISTRY] = registry
    app[METHODS] = {m.name: _wrapped(m) for m in registry}
    app[SERVICE] = service
    app.router.add_post("/rpc", rpc_endpoint)
    app.router.add_get("/openrpc.json", openrpc_endpoint)
    app.router.add_get("/health", health_endpoint)
    app.router.add_get("/.well-known/heroservice.json", manifest_endpoint)
    return app


def openrpc_document(registry: Registry, service: ServiceInfo) -> dict[str, Any]:
    return registry.openrpc_document(
        title=service.title, version=service.version, description=service.description
    )


async def rpc_endpoint(request: web.Request) -> web.Response:
    raw = await request.read()
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        error = {"code": PARSE_ERROR, "message": "Parse error", "data": "the body is not UTF-8"}
        return web.json_response({"jsonrpc": "2.0", "error": error, "id": None})
    answer = await async_dispatch(body, methods=request.app[METHODS], context=caller_of(request))
    if answer == "":
        return web.Response(status=204)  # notifications only: nothing to say
    return web.Response(text=answer, content_type="application/json")


async def openrpc_endpoint(request: web.Request) -> web.Response:
    return web.json_response(openrpc_document(request.app[REGISTRY], request.app[SERVICE]))


async def health_endpoint(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    return web.json_response({"status": "ok", "service": service.name, "version": service.version})


async def manifest_endpoint(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    return web.json_response(
        {
            "protocol": "openrpc",
            "name": service.name,
            "title": service.title,
            "version": service.version,
            "description": service.description,
            "socket": "rpc",
        }
    )


def caller_of(request: web.Request) -> str:
    """Who is on the other end of the socket: the kernel says (SO_PEERCRED), not the caller."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        return "unknown"
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return "unknown"
    pid, uid, _ = struct.unpack("3i", creds)
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = "?"
    return f"{name} (uid {uid}, pid {pid})"


def _wrapped(method: RpcMethod) -> Callable[..., Awaitable[Result]]:
    async def call(caller: str, *args: Any, **kwargs: Any) -> Result:
        problem = method.check_params(list(args) if args else kwargs)
        if problem is not None:
            return Error(INVALID_PARAMS, f"invalid params: {problem}")
        if method.wants_caller:
            kwargs["caller"] = caller
        try:
            return Success(await method.handler(**kwargs))
        except RpcFault as fault:
            if fault.data is None:
                return Error(fault.code, fault.message)
            return Error(fault.code, fault.message, fault.data)
        except Exception:
            correlation_id = uuid.uuid4().hex[:12]
            log.exception("%s failed (correlation id %s)", method.name, correlation_id)
            return Error(INTERNAL_ERROR, "internal error", {"correlation_id": correlation_id})

    return call


def bind_unix_socket(path: Path) -> socket.socket:
    """A socket bound at `path`, mode 0600, not yet listening; blocking, run it off the loop.

    Parent directories are made 0700. A socket file left by a dead daemon is removed; one a
    live daemon answers on is not (StartupError).
    """
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise StartupError(
            f"socket path {path} is longer than the {MAX_SOCKET_PATH} bytes a Unix socket allows"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.parent.chmod(0o700)
    except OSError as exc:
        raise StartupError(
            f"cannot make the socket directory {path.parent}: {exc.strerror}"
        ) from None
    _remove_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        path.chmod(0o600)  # before listen(): nobody else ever gets to connect
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot bind {path}: {exc.strerror}") from None
    return sock


def _remove_stale(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise StartupError(f"{path} exists and is not a socket; move it away")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise StartupError(f"cannot check {path}: {exc.strerror}") from None
        path.unlink(missing_ok=True)  # nobody listens: left by a daemon that died
        return
    finally:
        probe.close()
    raise StartupError(f"another daemon is already answering on {path}")


@contextlib.asynccontextmanager
async def serving_on_socket(
    app: web.Application, sock: socket.socket, *, shutdown_timeout_s: float
) -> AsyncIterator[None]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout_s)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield
    finally:
        await runner.cleanup()


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)
