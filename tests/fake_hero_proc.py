"""A stand-in for hero_proc, the Hero process supervisor and secret store (no source to run).

It speaks the protocol hero_onboarding/rpc/hero_proc.py assumes, written out here again on
purpose (not imported from the client), so that a client drifting from it fails the tests:

- the Hero socket spec on a Unix socket:
  `POST /rpc` JSON-RPC 2.0 (single or batch; notifications get 204; -32700 bad JSON,
  -32600 invalid request or empty batch, -32601 unknown method, -32602 bad params; errors
  come with HTTP 200), `GET /health`, `GET /openrpc.json`, `GET /.well-known/heroservice.json`,
  and `rpc.discover` on /rpc;
- `secret_get {name}` -> the value, or error -32020 when not stored;
- zinit's service methods and error codes (§1.2), named or positional params. It really
  supervises: `service_monitor` / `service_start` spawn `shlex.split(exec)` in a new session
  with the spec's env over ours, output to `<log_dir>/<name>.log`.
- zinit's stop (`src/zinit/lifecycle.rs`): `service_stop` sets the target Down, sends the
  stop signal (`signal.stop`, default SIGTERM) to the process group once and answers at
  once. The process exits on its own, or never: nothing escalates to SIGKILL, since zinit
  uses `shutdown_timeout` only at system shutdown. `service_kill {name, signal}` sends any
  signal by name (-32004 InvalidSignal for a name it does not know, -32003 IsDown when
  there is no process). `service_status` and `service_list` reap: an exited process shows
  pid 0 and its wait status as the state. `service_forget` / `service_delete` answer -32002
  IsUp while the target is Up or the pid is not 0, so also right after a stop.

Where it is simpler than zinit: a process that exits is not respawned (as with zinit's
`oneshot`), `after` is stored and reported but does not order anything, there is no `test`.

Knobs for tests, settable at any time (from any thread): `secret_errors` (secret_get answers
-32603), `secret_missing_as_null` (not-found answers a null result instead of -32020),
`canned` (method -> result answered instead of the real one), `stalled` (/rpc never answers),
`fail` ({(method, name): (code, message)}: a call of that method whose `name` param is that
name answers that error and does nothing; name None matches every call of the method) and
`unsupported` (method names answered -32601 and left out of the OpenRPC document, as from a
hero_proc whose API differs). `calls` records every request's (method, params), with env
values and secret values blanked, failed ones included.

Use `async with fake.serving(path)` from async tests, or `with running_fake_hero_proc(path,
...)` from sync ones: a background thread with its own loop keeps answering while the test
thread blocks on a subprocess that talks to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

VERSION = "0.0.0-fake"
REDACTED = "<redacted>"

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# zinit's codes (src/app/rpc.rs), and the secret store's assumed one.
SERVICE_NOT_FOUND = -32000
ALREADY_MONITORED = -32001
IS_UP = -32002
IS_DOWN = -32003
INVALID_SIGNAL = -32004
CONFIG_ERROR = -32005
ALREADY_EXISTS = -32007
SECRET_NOT_FOUND = -32020

CODE_NAMES = {
    SERVICE_NOT_FOUND: "ServiceNotFound",
    ALREADY_MONITORED: "AlreadyMonitored",
    IS_UP: "IsUp",
    IS_DOWN: "IsDown",
    INVALID_SIGNAL: "InvalidSignal",
    CONFIG_ERROR: "ConfigError",
    ALREADY_EXISTS: "AlreadyExists",
    SECRET_NOT_FOUND: "SecretNotFound",
}

# method -> its params, in positional order; every one is required.
METHODS: dict[str, tuple[str, ...]] = {
    "rpc.discover": (),
    "secret_get": ("name",),
    "service_list": (),
    "service_status": ("name",),
    "service_create": ("name", "content"),
    "service_monitor": ("name",),
    "service_start": ("name",),
    "service_stop": ("name",),
    "service_kill": ("name", "signal"),
    "service_forget": ("name",),
    "service_delete": ("name",),
}
LOG_MODES = ("ring", "stdout", "none")
# The names zinit (nix's Signal::from_str, after upper-casing) takes: SIGTERM, SIGKILL, ...
SIGNALS = {sig.name: sig for sig in signal.Signals if not sig.name.startswith("SIGRT")}
POLL_S = 0.02
TEARDOWN_TERM_S = 2.0  # at teardown, SIGKILL comes this soon at the latest


class Fault(Exception):
    def __init__(self, code: int, message: str, service: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.data = None
        if code in CODE_NAMES:  # zinit's error data shape, trimmed
            self.data = {"code_name": CODE_NAMES[code], "service": service}


@dataclass(frozen=True)
class FakeCall:
    method: str
    params: Any  # as sent (dict, list or None), with env and secret values blanked


@dataclass
class FakeService:
    name: str
    content: dict[str, Any]
    monitored: bool = False
    target: str = "Down"
    state: str = "Unknown"
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def refresh(self) -> None:
        """Reap an exited process and turn its wait status into zinit's state string."""
        if self.process is None or self.process.poll() is None:
            return
        code = self.process.returncode
        if code == 0:
            self.state = "Success"
        elif code > 0:
            self.state = f"Error(exit status: {code})"
        else:
            self.state = f"Error(signal: {-code} ({signal.Signals(-code).name}))"
        self.process = None

    @property
    def running(self) -> bool:
        self.refresh()
        return self.process is not None


@dataclass
class FakeHeroProc:
    log_dir: Path
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    secret_errors: bool = False
    secret_missing_as_null: bool = False
    canned: dict[str, Any] = field(default_factory=dict)
    stalled: bool = False
    fail: dict[tuple[str, str | None], tuple[int, str]] = field(default_factory=dict)
    unsupported: set[str] = field(default_factory=set)
    calls: list[FakeCall] = field(default_factory=list)
    services: dict[str, FakeService] = field(default_factory=dict)
    spawned: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._closing: asyncio.Event | None = None

    # -- what tests look at ---------------------------------------------------------------

    def methods_called(self) -> list[str]:
        return [call.method for call in list(self.calls)]

    def log_of(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- serving --------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/rpc", self._rpc)
        app.router.add_get("/health", self._health)
        app.router.add_get("/openrpc.json", self._openrpc)
        app.router.add_get("/.well-known/heroservice.json", self._manifest)
        return app

    @contextlib.asynccontextmanager
    async def serving(self, socket_path: Path) -> AsyncIterator[FakeHeroProc]:
        """Answer on `socket_path` in the running loop; on exit stop every process spawned."""
        self._closing = asyncio.Event()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        listening = False
        try:
            await web.UnixSite(runner, str(socket_path)).start()
            listening = True
            yield self
        finally:
            self._closing.set()
            await self.stop_everything()
            await runner.cleanup()
            if listening:  # Python 3.11 leaves the file, though nobody listens there any more
                _remove(socket_path)

    async def stop_everything(self) -> None:
        """SIGTERM every process still running, SIGKILL those left after TEARDOWN_TERM_S."""
        await asyncio.gather(*(_terminate(p, TEARDOWN_TERM_S) for p in list(self.spawned)))

    # -- HTTP endpoints -------------------------------------------------------------------

    async def _health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": "hero_proc", "version": VERSION})

    async def _openrpc(self, _: web.Request) -> web.Response:
        return web.json_response(self.openrpc_document())

    async def _manifest(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "protocol": "openrpc",
                "name": "hero_proc",
                "title": "hero_proc (fake)",
                "version": VERSION,
                "description": "Process supervisor and secret store (test stand-in).",
                "socket": "rpc",
            }
        )

    async def _rpc(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if self.stalled and self._closing is not None:
            await self._closing.wait()
        try:
            parsed = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _json(_error(None, PARSE_ERROR, "Parse error"))
        if isinstance(parsed, list):
            if not parsed:
                return _json(_error(None, INVALID_REQUEST, "Invalid Request: empty batch"))
            answers = [await self._one(entry) for entry in parsed]
            given = [answer for answer in answers if answer is not None]
            return _json(given) if given else web.Response(status=204)
        answer = await self._one(parsed)
        return web.Response(status=204) if answer is None else _json(answer)

    async def _one(self, entry: Any) -> dict[str, Any] | None:
        """One request's answer; None for a notification."""
        if not isinstance(entry, dict):
            return _error(None, INVALID_REQUEST, "Invalid Request")
        request_id = entry.get("id")
        id_ok = request_id is None or (
            isinstance(request_id, int | str) and not isinstance(request_id, bool)
        )
        if not id_ok:
            return _error(None, INVALID_REQUEST, "Invalid Request: id")
        method, params = entry.get("method"), entry.get("params")
        if (
            entry.get("jsonrpc") != "2.0"
            or not isinstance(method, str)
            or not (params is None or isinstance(params, list | dict))
        ):
            return _error(request_id, INVALID_REQUEST, "Invalid Request")
        self.calls.append(FakeCall(method, self._scrubbed(method, params)))
        try:
            result = await self._dispatch(method, params)
        except Fault as fault:
            answer = _error(request_id, fault.code, fault.message, fault.data)
        else:
            answer = {"jsonrpc": "2.0", "id": request_id, "result": result}
        return answer if "id" in entry else None

    def _scrubbed(self, method: str, params: Any) -> Any:
        """`params` for the call log: no env value and no secret value survives in it."""
        secret_values = {value for value in self.secrets.values() if value}

        def scrub(value: Any, key: str | None = None) -> Any:
            if isinstance(value, dict):
                if key == "env":
                    return {k: REDACTED for k in value}
                return {k: scrub(v, k) for k, v in value.items()}
            if isinstance(value, list):
                return [scrub(v) for v in value]
            if isinstance(value, str) and value in secret_values:
                return REDACTED
            return value

        return scrub(params)

    async def _dispatch(self, method: str, params: Any) -> Any:
        names = METHODS.get(method)
        if names is None or method in set(self.unsupported):
            raise Fault(METHOD_NOT_FOUND, "Method not found")
        kwargs = _bind(names, params)
        name = kwargs.get("name")
        if "name" in kwargs and (
            not isinstance(name, str) or not name or any(c in name for c in "/\\.")
        ):
            raise Fault(INVALID_PARAMS, "Invalid params: name")
        failures = dict(self.fail)
        injected = failures.get((method, name), failures.get((method, None)))
        if injected is not None:
            code, message = injected
            raise Fault(code, message, name)
        if method in self.canned:
            return self.canned[method]
        handler = getattr(self, "_m_" + method.replace(".", "_"))
        return await handler(**kwargs)

    # -- methods --------------------------------------------------------------------------

    async def _m_rpc_discover(self) -> dict[str, Any]:
        return self.openrpc_document()

    async def _m_secret_get(self, name: str) -> str | None:
        if self.secret_errors:
            raise Fault(INTERNAL_ERROR, "internal error")
        if name in self.secrets:
            return self.secrets[name]
        if self.secret_missing_as_null:
            return None
        raise Fault(SECRET_NOT_FOUND, f"secret {name} not found")

    async def _m_service_list(self) -> dict[str, str]:
        listed = {}
        for service in list(self.services.values()):
            if service.monitored:
                service.refresh()
                listed[service.name] = service.state
        return listed

    async def _m_service_status(self, name: str) -> dict[str, Any]:
        service = self._monitored(name)
        service.refresh()
        after = {}
        for dep in service.content.get("after", []):
            other = self.services.get(dep)
            if other is not None:
                other.refresh()
            after[dep] = other.state if other is not None and other.monitored else "Unknown"
        return {
            "name": name,
            "pid": service.pid,
            "state": service.state,
            "target": service.target,
            "after": after,
        }

    async def _m_service_create(self, name: str, content: Any) -> str:
        _check_content(content)
        if name in self.services:
            raise Fault(ALREADY_EXISTS, f"service '{name}' already exists", name)
        self.services[name] = FakeService(name, content)
        return f"Service '{name}' created successfully"

    async def _m_service_monitor(self, name: str) -> None:
        service = self.services.get(name)
        if service is None:
            raise Fault(SERVICE_NOT_FOUND, f"service '{name}' not found", name)
        if service.monitored:
            raise Fault(ALREADY_MONITORED, f"service '{name}' already monitored", name)
        service.monitored = True
        self._bring_up(service)

    async def _m_service_start(self, name: str) -> None:
        self._bring_up(self._monitored(name))

    async def _m_service_stop(self, name: str) -> None:
        """zinit's: target Down, the stop signal once, and answer without waiting."""
        service = self._monitored(name)
        service.target = "Down"
        stop = service.content.get("signal", {}).get("stop", "sigterm")
        if service.running:
            _signal_group(service, SIGNALS[stop.upper()])

    async def _m_service_kill(self, name: str, signal: Any) -> None:
        sig = SIGNALS.get(signal.upper()) if isinstance(signal, str) else None
        if sig is None:
            raise Fault(INVALID_SIGNAL, f"invalid signal: {str(signal)[:40]}", name)
        service = self._monitored(name)
        if not service.running:
            raise Fault(IS_DOWN, f"service '{name}' is down", name)
        _signal_group(service, sig)

    async def _m_service_forget(self, name: str) -> None:
        service = self._monitored(name)
        self._refuse_if_up(service)
        service.monitored = False
        service.state = "Unknown"

    async def _m_service_delete(self, name: str) -> str:
        service = self.services.get(name)
        if service is None:
            raise Fault(SERVICE_NOT_FOUND, f"service '{name}' not found", name)
        self._refuse_if_up(service)
        del self.services[name]
        return f"Service '{name}' deleted successfully"

    # -- supervision ----------------------------------------------------------------------

    def _monitored(self, name: str) -> FakeService:
        service = self.services.get(name)
        if service is None or not service.monitored:
            raise Fault(SERVICE_NOT_FOUND, f"service '{name}' not found", name)
        return service

    @staticmethod
    def _refuse_if_up(service: FakeService) -> None:
        if service.running or (service.monitored and service.target == "Up"):
            raise Fault(IS_UP, f"service '{service.name}' is up; stop it first", service.name)

    def _bring_up(self, service: FakeService) -> None:
        service.target = "Up"
        if service.running:
            return
        try:
            service.process = _spawn(service, self.log_dir / f"{service.name}.log")
        except (OSError, ValueError):
            service.state = "Failure"
            return
        self.spawned.append(service.process)
        service.state = "Running"  # no `test` command: zinit goes straight to Running

    def openrpc_document(self) -> dict[str, Any]:
        return {
            "openrpc": "1.2.6",
            "info": {"title": "hero_proc (fake)", "version": VERSION},
            "methods": [
                {
                    "name": name,
                    "params": [
                        {"name": p, "required": True, "schema": _PARAM_SCHEMAS[p]} for p in params
                    ],
                    "result": {"name": "result", "schema": {}},
                }
                for name, params in METHODS.items()
                if name not in set(self.unsupported)
            ],
        }


_PARAM_SCHEMAS = {
    "name": {"type": "string", "pattern": "^[^/\\\\.]+$"},
    "content": {"type": "object", "required": ["exec"]},
    "signal": {"type": "string", "examples": ["SIGTERM", "SIGKILL"]},
}


def _bind(names: tuple[str, ...], params: Any) -> dict[str, Any]:
    """Named or positional params (zinit takes both) as keyword arguments; all required."""
    if params is None:
        params = {}
    if isinstance(params, list):
        if len(params) != len(names):
            raise Fault(INVALID_PARAMS, f"Invalid params: expected {len(names)}")
        return dict(zip(names, params, strict=True))
    unknown = set(params) - set(names)
    missing = set(names) - set(params)
    if unknown or missing:
        raise Fault(
            INVALID_PARAMS,
            f"Invalid params: missing {sorted(missing)}, unknown {sorted(unknown)}",
        )
    return dict(params)


def _check_content(content: Any) -> None:
    """zinit's service YAML as an object (§1.4): `exec` is required, the rest typed."""
    if not isinstance(content, dict):
        raise Fault(INVALID_PARAMS, "Invalid params: content must be an object")
    problems = []
    if not isinstance(content.get("exec"), str) or not content["exec"].strip():
        problems.append("exec")
    env = content.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        problems.append("env")
    after = content.get("after", [])
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        problems.append("after")
    timeout = content.get("shutdown_timeout", 10)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
        problems.append("shutdown_timeout")
    if content.get("log", "ring") not in LOG_MODES:
        problems.append("log")
    signals = content.get("signal", {})
    if not isinstance(signals, dict) or not all(
        isinstance(v, str) and v.upper() in SIGNALS for v in signals.values()
    ):
        problems.append("signal")
    if problems:
        raise Fault(CONFIG_ERROR, f"invalid service config: {', '.join(problems)}")


def _spawn(service: FakeService, log_path: Path) -> subprocess.Popen[bytes]:
    """Start the service's command in its own session, output appended to its log."""
    argv = shlex.split(service.content["exec"])
    env = {**os.environ, **service.content.get("env", {})}
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _signal_group(service: FakeService, sig: signal.Signals) -> None:
    """`sig` to the service's process group, as zinit's killpg.

    Called only while the process is unreaped: its pid (= the group id) cannot have been
    reused then.
    """
    assert service.process is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(service.process.pid, sig)


async def _terminate(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Teardown only: SIGTERM its process group, SIGKILL after `timeout_s`, and wait for it.

    The group is signalled only while the leader is unreaped: its pid (= the group id) cannot
    have been reused then.
    """
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        await _exited(process, within_s=wait_s)


async def _exited(process: subprocess.Popen[bytes], *, within_s: float) -> bool:
    """Poll (which also reaps) until it has exited or the time is up."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return True
        await asyncio.sleep(POLL_S)
    return process.poll() is not None


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _error(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def _json(body: Any) -> web.Response:
    return web.Response(text=json.dumps(body), content_type="application/json")


@contextlib.contextmanager
def running_fake_hero_proc(
    socket_path: Path,
    *,
    log_dir: Path,
    secrets: Mapping[str, str] | None = None,
) -> Iterator[FakeHeroProc]:
    """The fake answering on `socket_path` from a thread of its own, for sync tests.

    On exit it stops serving and kills every process it spawned.
    """
    fake = FakeHeroProc(log_dir=log_dir, secrets=dict(secrets or {}))
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None
    failure: list[BaseException] = []

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        try:
            async with fake.serving(socket_path):
                started.set()
                await stop.wait()
        except BaseException as exc:
            failure.append(exc)
            raise
        finally:
            started.set()

    thread = threading.Thread(
        target=lambda: loop.run_until_complete(serve()), name="fake-hero-proc", daemon=True
    )
    thread.start()
    try:
        if not started.wait(timeout=10):
            raise AssertionError("the fake hero_proc did not start within 10 s")
        if failure:
            raise failure[0]
        yield fake
    finally:
        if stop is not None:
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        if not thread.is_alive():
            loop.close()
