"""A client for hero_proc, the Hero process supervisor and secret store.

hero_proc has no public source, SDK or protocol document. Everything this module assumes about
it is an assumption modelled on zinit, its predecessor, and on the Hero socket spec (HTTP/1.1
over a Unix socket, JSON-RPC 2.0 on POST /rpc). The assumptions all live here, each
marked `ASSUMPTION`, so that meeting the real hero_proc means changing this file only:

- where its socket is (`hero_proc_socket`);
- the transport: HTTP/1.1 on that Unix socket, JSON-RPC 2.0 on `POST /rpc`, `GET /health`;
- the method names, their named params and the shapes of their results;
- the error codes that mean "not there" (a secret, a service) or "already there".

Failures come in two kinds, because callers treat them differently: `HeroProcUnavailable`
means nothing is listening (hero_proc is not running here, which is normal on a developer's
machine), and `HeroProcError` means something answered, or could not be reached for another
reason, and what it said is not usable. That should be reported, not skipped.
"""

from __future__ import annotations

import errno
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp

from ..errors import CommandError
from .client import RpcClient, RpcError

# ASSUMPTION: the Hero socket layout (§3.2, `~/hero/var/sockets/<service>/rpc.sock`) with
# hero_proc as the service name, overridable by an environment variable of our own naming.
SOCKET_ENV: Final = "HERO_PROC_SOCKET"
SOCKET_UNDER_HOME: Final = Path("hero/var/sockets/hero_proc/rpc.sock")

# ASSUMPTION: zinit's error codes (§1.2, `rpc.rs` `zinit_err_to_rpc`) carried over unchanged.
SERVICE_NOT_FOUND: Final = -32000
IS_UP: Final = -32002
IS_DOWN: Final = -32003
INVALID_SIGNAL: Final = -32004
ALREADY_EXISTS: Final = -32007
# JSON-RPC 2.0's own: what a hero_proc whose API differs from zinit's answers to our names.
METHOD_NOT_FOUND: Final = -32601
# ASSUMPTION: zinit has no secrets (§1.5); this code is our guess, the next free one after
# zinit's -32000..-32011 block leaving room for zinit to grow.
SECRET_NOT_FOUND: Final = -32020

# ASSUMPTION: zinit's state strings (Rust `Debug` of its State enum, §1.2); `Error(..)` carries
# the wait status, e.g. `Error(exit status: 1)`.
RUNNING_STATES: Final = frozenset({"Running", "Spawned"})

# A connection attempt failing with one of these means nobody is listening at the path.
_NOBODY_LISTENING: Final = frozenset(
    {errno.ENOENT, errno.ENOTDIR, errno.ECONNREFUSED, errno.ENOTSOCK}
)
# What RpcClient raises when no usable answer came back (aiohttp.ClientError is an OSError
# only in part; RpcError is its "the body is not JSON").
_TRANSPORT_FAILURES: Final = (aiohttp.ClientError, OSError, TimeoutError, RpcError)


def hero_proc_socket(env: Mapping[str, str]) -> Path:
    """`$HERO_PROC_SOCKET`, else `<HOME>/hero/var/sockets/hero_proc/rpc.sock`.

    `env` is passed in (not read from os.environ) so that settings and tests decide which
    environment counts.
    """
    configured = env.get(SOCKET_ENV)
    if configured:
        return Path(configured)
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    return home / SOCKET_UNDER_HOME


class HeroProcUnavailable(CommandError):
    """Nothing listens on hero_proc's socket: it is not running here. Callers go on without it."""


class HeroProcError(CommandError):
    """hero_proc was reached (or should have been) but the call failed.

    `code` is the JSON-RPC error code when it answered with one, else None (timeout, HTTP error,
    malformed answer). The message is built from the method name, the code and hero_proc's own
    error message at most: never from a result, never quoting hero_proc for secret_get, and
    with the env values a service was created with blanked, so no secret reaches a log line.
    Nothing is chained (`from None`) for the same reason.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ServiceSpec:
    """A service for hero_proc to run; `as_content` is what `service_create` is sent.

    ASSUMPTION: the content is zinit's service YAML as a JSON object (§1.4): `exec` is one
    command line that the supervisor shlex-splits, so build it with `shlex.join(argv)`.
    """

    name: str
    exec: str
    env: dict[str, str] = field(repr=False)  # it may carry secrets: keep it out of reprs
    after: tuple[str, ...] = ()
    shutdown_timeout: int = 10
    log: str = "stdout"  # zinit: ring | stdout | none

    def as_content(self) -> dict[str, Any]:
        return {
            "exec": self.exec,
            "env": dict(self.env),
            "after": list(self.after),
            "shutdown_timeout": self.shutdown_timeout,
            "log": self.log,
        }


@dataclass(frozen=True)
class ServiceStatus:
    """ASSUMPTION: zinit's `service_status` result `{name, pid, state, target, after}`."""

    name: str
    pid: int  # 0 when no process is running
    state: str  # Running, Spawned, Success, Error(..), Failure, Blocked, Unknown, ...
    target: str  # Up or Down: what the supervisor is trying to achieve

    @property
    def running(self) -> bool:
        return self.pid > 0 and self.state in RUNNING_STATES


class HeroProcClient:
    """`async with HeroProcClient(path) as hp`: calls on hero_proc's socket.

    The timeout is short by default: hero_proc is local, and a caller waiting on it (a CLI
    fetching a secret at start-up) should fail soon rather than hang.
    """

    def __init__(self, socket_path: Path, *, timeout_s: float = 5.0) -> None:
        self.socket_path = socket_path
        self._timeout_s = timeout_s
        self._rpc: RpcClient | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> HeroProcClient:
        # Made here, not in __init__: aiohttp wants a running loop, and a client that is
        # constructed but never entered then leaves no unclosed session behind.
        self._rpc = RpcClient(self.socket_path, timeout_s=self._timeout_s)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._rpc is not None:
            await self._rpc.close()
            self._rpc = None

    # -- health ---------------------------------------------------------------------------

    async def ping(self) -> None:
        """Return when hero_proc's `GET /health` answers 200 (ASSUMPTION: Hero socket spec)."""
        try:
            status, _ = await self._client().get("/health")
        except ValueError:
            raise HeroProcError("hero_proc's /health did not answer JSON") from None
        except _TRANSPORT_FAILURES as exc:
            raise self._translated(exc, "GET /health") from None
        if status != 200:
            raise HeroProcError(f"hero_proc's /health answered HTTP {status}")

    # -- secrets --------------------------------------------------------------------------

    async def secret_get(self, name: str) -> str | None:
        """The secret's value, or None when hero_proc does not hold one by that name.

        ASSUMPTION: method `secret_get`, params `{"name"}`; the result is the value as a
        string; "not stored" is a null result or error SECRET_NOT_FOUND.
        """
        try:
            result = await self._call("secret_get", {"name": name}, quote_server=False)
        except HeroProcError as exc:
            if exc.code == SECRET_NOT_FOUND:
                return None
            raise
        if result is None or isinstance(result, str):
            return result
        # Never show the result: whatever it is, it may hold the secret.
        raise HeroProcError(
            f"hero_proc's secret_get answered a {type(result).__name__}, not a string or null"
        )

    # -- services (ASSUMPTION: zinit's service_* methods, §1.2, with named params) ----------

    async def service_create(self, spec: ServiceSpec) -> None:
        """Store the service's definition; it does not start it (zinit: monitor does).

        A name already in use raises HeroProcError with code ALREADY_EXISTS.
        """
        await self._call(
            "service_create",
            {"name": spec.name, "content": spec.as_content()},
            redact=tuple(spec.env.values()),
        )

    async def service_monitor(self, name: str) -> None:
        """Have the supervisor take the created service on (zinit also starts it here)."""
        await self._call("service_monitor", {"name": name})

    async def service_start(self, name: str) -> None:
        await self._call("service_start", {"name": name})

    async def service_stop(self, name: str) -> None:
        """Ask it to stop: it returns before the process has exited, maybe before it ever will.

        zinit sets the target Down and sends the stop signal (`signal.stop`, SIGTERM by
        default) once, then answers; there is no SIGKILL after `shutdown_timeout`, which zinit
        uses only at system shutdown. So poll `service_status` until its pid is 0, and if the
        deadline passes first, `service_kill(name, "SIGKILL")`.
        """
        await self._call("service_stop", {"name": name})

    async def service_kill(self, name: str, signal: str) -> None:
        """Send `signal` (a name such as "SIGKILL") to the service's process; it does not wait.

        ASSUMPTION: zinit's `service_kill {name, signal}`. A name it does not know raises
        HeroProcError with code INVALID_SIGNAL, a service with no process IS_DOWN. The target is
        not changed: kill a service that was stopped first, or the supervisor may restart it.
        """
        await self._call("service_kill", {"name": name, "signal": signal})

    async def service_forget(self, name: str) -> None:
        """Stop supervising a stopped service: IS_UP while its target is Up or it has a pid.

        Right after `service_stop` that is usually still so: wait for the pid to be 0 first.
        """
        await self._call("service_forget", {"name": name})

    async def service_delete(self, name: str) -> None:
        """Remove the stored definition."""
        await self._call("service_delete", {"name": name})

    async def service_status(self, name: str) -> ServiceStatus | None:
        """The service's status; None when hero_proc supervises no service by that name."""
        try:
            result = await self._call("service_status", {"name": name})
        except HeroProcError as exc:
            if exc.code == SERVICE_NOT_FOUND:
                return None
            raise
        if not isinstance(result, dict):
            raise HeroProcError("hero_proc's service_status did not answer an object")
        pid, state, target = result.get("pid"), result.get("state"), result.get("target")
        if not (
            isinstance(pid, int)
            and not isinstance(pid, bool)
            and pid >= 0
            and isinstance(state, str)
            and isinstance(target, str)
        ):
            raise HeroProcError("hero_proc's service_status answer lacks pid, state or target")
        return ServiceStatus(name=name, pid=pid, state=state, target=target)

    async def service_list(self) -> dict[str, str]:
        """Every supervised service's name and state string."""
        result = await self._call("service_list", None)
        if not isinstance(result, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in result.items()
        ):
            raise HeroProcError("hero_proc's service_list did not answer {name: state}")
        return result

    # -- plumbing -------------------------------------------------------------------------

    def _client(self) -> RpcClient:
        if self._rpc is None:
            raise RuntimeError("use HeroProcClient as `async with HeroProcClient(path) as hp`")
        return self._rpc

    async def _call(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        quote_server: bool = True,
        redact: tuple[str, ...] = (),
    ) -> Any:
        """The result of one call; its failures as HeroProcUnavailable or HeroProcError.

        RpcClient.post (not .call) so that the answer's envelope is checked here: a body that
        is JSON but not a JSON-RPC answer (another service on the socket, an HTTP error page)
        is a HeroProcError, not a KeyError. hero_proc's error message is quoted only when
        `quote_server` (never for secrets), with the `redact` strings (values we sent) blanked.
        """
        request_id = next(self._ids)
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            request["params"] = params
        try:
            answer = await self._client().post(request)
        except _TRANSPORT_FAILURES as exc:
            raise self._translated(exc, method) from None
        if not isinstance(answer, dict) or answer.get("id") != request_id:
            raise HeroProcError(f"hero_proc's answer to {method} is not a JSON-RPC response")
        if "error" in answer:
            error = answer["error"]
            code = error.get("code") if isinstance(error, dict) else None
            if not isinstance(code, int) or isinstance(code, bool):
                raise HeroProcError(f"hero_proc's answer to {method} has a malformed error")
            text = f"hero_proc's {method} failed with error {code}"
            message = error.get("message")
            if quote_server and isinstance(message, str) and message:
                for value in redact:
                    # as sent, and as it reads inside a JSON string the server may quote
                    for form in {value, json.dumps(value)[1:-1]} - {""}:
                        message = message.replace(form, "<redacted>")
                text += f": {message[:200]}"
            raise HeroProcError(text, code)
        if "result" not in answer:
            raise HeroProcError(f"hero_proc's answer to {method} has neither result nor error")
        return answer["result"]

    def _translated(self, exc: Exception, what: str) -> HeroProcUnavailable | HeroProcError:
        """What a failure to get an answer means for the caller."""
        if isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError):
            os_error = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
            if os_error.errno in _NOBODY_LISTENING:
                return HeroProcUnavailable(f"hero_proc is not listening on {self.socket_path}")
            # Permission denied, a path too long for a socket: it may well be running, and
            # quietly going on without it would hide a misconfiguration.
            return HeroProcError(f"cannot connect to hero_proc at {self.socket_path}: {os_error}")
        if isinstance(exc, FileNotFoundError):
            return HeroProcUnavailable(f"hero_proc is not listening on {self.socket_path}")
        if isinstance(exc, TimeoutError):
            return HeroProcError(f"hero_proc did not answer {what} within {self._timeout_s} s")
        if isinstance(exc, RpcError):  # RpcClient's "the body is not JSON"
            return HeroProcError(f"hero_proc's answer to {what} is not JSON")
        # Another aiohttp.ClientError (the connection dropped mid-answer, ...) or OSError.
        return HeroProcError(f"talking to hero_proc ({what}) failed: {type(exc).__name__}")
