"""The Hero socket spec's HTTP surface for a JSON-RPC service, and its Unix socket.

`POST /rpc` (single, batch, notifications -> 204), `GET /openrpc.json`, `GET /health`,
`GET /.well-known/heroservice.json`; `rpc.discover` answers on /rpc too.

Each request (each entry of a batch, separately, so one bad entry cannot sink the others)
goes through `dispatch.dispatch` (what jsonrpcserver did, at a fraction of its cost per call).
Each method is wrapped: its parameters are checked against the registry first, and an
unexpected exception becomes -32603 "internal error" with a correlation id (logged with the
traceback, never sent), never the exception's text. Each answer is encoded once: the check
that it is JSON (so one bad entry cannot fail a batch) is the encoding that is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import stat
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from ..primitives import StartupError
from .dispatch import Method, Reply, dispatch
from .errors import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR, RpcFault
from .numbers import refuse_numbers
from .peer import peer_credentials, user_name
from .registry import Registry, RpcMethod

log = logging.getLogger(__name__)

MAX_SOCKET_PATH: Final = 107  # sun_path is 108 bytes with its terminating NUL
REQUEST_MAX_BYTES: Final = 1 << 20
MAX_BATCH: Final = 100


@dataclass(frozen=True)
class ServiceInfo:
    name: str  # the socket directory's name, e.g. hero_onboarding_admin
    title: str
    version: str
    description: str


REGISTRY: Final = web.AppKey("rpc_registry", Registry)
SERVICE: Final = web.AppKey("rpc_service", ServiceInfo)
METHODS: Final = web.AppKey("rpc_methods", dict)  # name -> the wrapped method dispatch calls


def create_rpc_app(registry: Registry, service: ServiceInfo) -> web.Application:
    """The HTTP app; the registry answers `rpc.discover` with its OpenRPC document."""
    if registry.get("rpc.discover") is None:

        async def discover() -> dict[str, Any]:
            return openrpc_document(registry, service)

        registry.method(
            "rpc.discover",
            "The OpenRPC document describing this service.",
            result={"type": "object", "required": ["openrpc", "info", "methods"]},
        )(discover)
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


def _error(code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "error": error, "id": None}


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


# What json.loads(text, parse_constant=...) builds on every call, built once (py-spy: ~1 % of
# the admin daemon's time went to JSONDecoder.__init__).
_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)


async def rpc_endpoint(request: web.Request) -> web.Response:
    """Never an HTTP 500: anything that escapes the checks is a JSON-RPC -32603, logged here."""
    try:
        return await _rpc_endpoint(request)
    except Exception:
        correlation_id = uuid.uuid4().hex[:12]
        log.exception("answering /rpc failed (correlation id %s)", correlation_id)
        return _answer(_error(INTERNAL_ERROR, "internal error", {"correlation_id": correlation_id}))


async def _rpc_endpoint(request: web.Request) -> web.Response:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _answer(_error(INVALID_REQUEST, "Invalid Request", "the request is too large"))
    except web.RequestPayloadError:
        return _answer(_error(PARSE_ERROR, "Parse error", "the body could not be read"))
    try:
        parsed = _DECODER.decode(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "the body is not UTF-8" if isinstance(exc, UnicodeDecodeError) else "not JSON"
        return _answer(_error(PARSE_ERROR, "Parse error", reason))
    if isinstance(parsed, list):
        if not parsed:
            return _answer(_error(INVALID_REQUEST, "Invalid Request", "an empty batch"))
        if len(parsed) > MAX_BATCH:
            return _answer(
                _error(INVALID_REQUEST, "Invalid Request", f"at most {MAX_BATCH} calls a batch")
            )
        answers = await asyncio.gather(*(_guarded(request, entry) for entry in parsed))
        given = [a for a in answers if a is not None]
        # json.dumps of the list, from its items' encodings: the same text, encoded once.
        return _encoded("[" + ", ".join(given) + "]") if given else web.Response(status=204)
    answer = await _guarded(request, parsed)
    return web.Response(status=204) if answer is None else _encoded(answer)


async def _guarded(request: web.Request, entry: Any) -> str | None:
    """One entry's answer, encoded (None: nothing to send), always JSON: a bad id or a
    non-finite number in it is refused before anything runs, and a failure while answering
    (encoding included) costs only this entry."""
    refusal = refuse_numbers(entry)
    if refusal is not None:
        return None if refusal.answer is None else json.dumps(refusal.answer)
    try:
        answer = await _dispatch(request, entry)
        return None if answer is None else json.dumps(answer, allow_nan=False)
    except Exception:
        correlation_id = uuid.uuid4().hex[:12]
        log.exception("answering an /rpc call failed (correlation id %s)", correlation_id)
        failed = _error(INTERNAL_ERROR, "internal error", {"correlation_id": correlation_id})
        failed["id"] = entry.get("id") if isinstance(entry, dict) else None
        return json.dumps(failed)


async def _dispatch(request: web.Request, entry: Any) -> Any:
    """One entry through the app's methods; its answer as JSON data, None for a notification."""
    methods: dict[str, Method] = request.app[METHODS]
    return await dispatch(entry, methods, request)


def _answer(body: Any) -> web.Response:
    return _encoded(json.dumps(body, allow_nan=False))


def _encoded(text: str) -> web.Response:
    return web.Response(text=text, content_type="application/json")


async def openrpc_endpoint(request: web.Request) -> web.Response:
    return web.json_response(openrpc_document(request.app[REGISTRY], request.app[SERVICE]))


async def health_endpoint(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    return web.json_response(
        {"status": "ok", "service": service.name, "version": service.version, "pid": os.getpid()}
    )


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
    peer = peer_credentials(sock) if sock is not None else None
    if peer is None:
        return "unknown"
    return f"{user_name(peer.uid)} (uid {peer.uid}, pid {peer.pid})"


def _wrapped(method: RpcMethod) -> Callable[[web.Request, Any], Awaitable[Reply]]:
    async def call(request: web.Request, params: list[Any] | dict[str, Any]) -> Reply:
        try:
            problem = method.check_params(params)
            if problem is not None:
                return Reply(error=_fault(INVALID_PARAMS, f"invalid params: {problem}"))
            kwargs = dict(params) if isinstance(params, dict) else {}
            if method.wants_caller:
                kwargs["caller"] = caller_of(request)
            return Reply(result=await method.handler(**kwargs))
        except RpcFault as fault:
            return Reply(error=_fault(fault.code, fault.message, fault.data))
        except Exception:
            correlation_id = uuid.uuid4().hex[:12]
            log.exception("%s failed (correlation id %s)", method.name, correlation_id)
            return Reply(
                error=_fault(INTERNAL_ERROR, "internal error", {"correlation_id": correlation_id})
            )

    return call


def _fault(code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return error


@dataclass
class BoundSocket:
    """A listening Unix socket, and the lock that makes it ours while we hold it."""

    sock: socket.socket
    path: Path
    inode: int
    lock_fd: int

    def release(self) -> None:
        """Close; remove the socket file only if it is still the one we made."""
        self.sock.close()
        with contextlib.suppress(OSError):
            if self.path.lstat().st_ino == self.inode:
                self.path.unlink()
        os.close(self.lock_fd)


def bind_unix_socket(path: Path) -> BoundSocket:
    """Listen at `path` (mode 0600); blocking, run it off the loop.

    Directories made here are 0700; one not ours alone is refused (_make_private_dirs). A
    lock file beside the socket, held for the daemon's life,
    says whether another daemon owns it: only then is a socket file left by a dead daemon
    removed, so two daemons starting at once cannot both think they own the path.
    """
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise StartupError(
            f"socket path {path} is longer than the {MAX_SOCKET_PATH} bytes a Unix socket allows"
        )
    try:
        _make_private_dirs(path.parent)
        lock_fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise StartupError(
            f"cannot use the socket directory {path.parent}: {exc.strerror}"
        ) from None
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StartupError(f"another daemon is already answering on {path}") from None
        _remove_leftover(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            path.chmod(0o600)  # before listen(): nobody else ever gets to connect
            sock.listen(128)
            inode = path.lstat().st_ino
        except OSError as exc:
            sock.close()
            raise StartupError(f"cannot listen on {path}: {exc.strerror}") from None
    except BaseException:
        os.close(lock_fd)
        raise
    return BoundSocket(sock, path, inode, lock_fd)


def _make_private_dirs(directory: Path) -> None:
    """Create `directory` and any missing parents 0700, then make sure it is ours alone.

    The socket directory is where a client finds the daemon: whoever can write in it can put
    their own socket there and receive what `hero-onboarding rpc` sends. So it must be owned
    by this process's uid and writable by nobody else (a directory we own but left 0755 is
    tightened to 0700), and every directory above it must be one that only we or root can
    change (a world-writable one only with the sticky bit, like /tmp). See docs/local-trust.md.
    """
    directory = directory.absolute()
    missing = []
    for candidate in (directory, *directory.parents):
        if os.path.lexists(candidate):
            break
        missing.append(candidate)
    for created in reversed(missing):
        created.mkdir(mode=0o700)
        created.chmod(0o700)
    _check_ancestors(directory.parent)
    info = directory.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise OSError(errno.ENOTDIR, "not a directory (or a symbolic link)")
    uid = os.geteuid()
    if info.st_uid != uid:
        raise StartupError(
            f"socket directory {directory} is owned by uid {info.st_uid}, not {uid}: "
            "remove it or fix its owner"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StartupError(
            f"socket directory {directory} is writable by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):04o}): remove it, or check what is in it "
            "and chmod 700 it"
        )
    directory.chmod(0o700)


def _check_ancestors(directory: Path) -> None:
    """Refuse a path above the socket directory that someone else could redirect or swap.

    Each symbolic link as written must be ours or root's (in a sticky directory its owner can
    replace it); each real directory, once links are resolved, must be ours or root's and not
    writable by group or others unless it is sticky (then only owners can rename entries).
    """
    uid = os.geteuid()
    trusted = {uid, 0}
    for written in (*reversed(directory.parents), directory):
        info = written.lstat()
        if stat.S_ISLNK(info.st_mode) and info.st_uid not in trusted:
            raise StartupError(
                f"socket directory: {written} is a symbolic link owned by uid {info.st_uid}, "
                f"not {uid} or root: use a path nobody else controls"
            )
    resolved = directory.resolve()
    for real in (resolved, *resolved.parents):
        info = real.stat()
        if info.st_uid not in trusted:
            raise StartupError(
                f"socket directory: {real} is owned by uid {info.st_uid}, not {uid} or root, "
                "so that user can replace what is below it: use a path nobody else controls"
            )
        writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if writable and not info.st_mode & stat.S_ISVTX:
            raise StartupError(
                f"socket directory: {real} is writable by group or others without the sticky "
                f"bit (mode {stat.S_IMODE(info.st_mode):04o}): use a path nobody else controls"
            )


def _remove_leftover(path: Path) -> None:
    """We hold the lock, so a socket file here was left by a daemon that is gone."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise StartupError(f"{path} exists and is not a socket; move it away")
    path.unlink()


@contextlib.asynccontextmanager
async def serving_on_socket(
    app: web.Application, bound: BoundSocket, *, shutdown_timeout_s: float
) -> AsyncIterator[None]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout_s)
    await runner.setup()
    try:
        await web.SockSite(runner, bound.sock).start()
        yield
    finally:
        await runner.cleanup()
