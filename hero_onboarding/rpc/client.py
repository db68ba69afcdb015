"""Calling a JSON-RPC service on a Unix socket (the CLI's `rpc` command, tests, benchmarks).

Before anything is sent on a new connection, the kernel is asked who listens on the other end
(SO_PEERCRED): a server that runs neither as our uid nor as root is refused. Checking the
socket file's owner would not do: whoever can write in its directory can swap the file
between the check and the connect; the peer credentials belong to the connection itself.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler

from ..errors import ErrorAnswer, HeroOnboardingError
from .peer import peer_credentials, user_name


class RpcError(ErrorAnswer):
    """The service answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} ({code})")
        self.code, self.message, self.data = code, message, data


class UntrustedServer(HeroOnboardingError, aiohttp.ClientConnectionError):
    """The server on the socket runs as another user: nothing was sent to it."""

    def __init__(self, socket_path: str, uid: int | None) -> None:
        who = "an unknown user" if uid is None else f"uid {uid} ({user_name(uid)})"
        super().__init__(
            f"refusing the server on {socket_path}: it runs as {who}, not as uid "
            f"{os.geteuid()} or root; nothing was sent (who owns {Path(socket_path).parent}?)"
        )
        self.socket_path, self.uid = socket_path, uid


class PeerCheckingConnector(aiohttp.UnixConnector):
    """A UnixConnector that hands out a connection only once its server's uid is trusted.

    aiohttp has no public hook between connect and the first byte sent, so this overrides
    `_create_connection` (the one place every new connection is made); tests pin it down.
    """

    async def _create_connection(
        self,
        req: Any,
        traces: Any,
        timeout: Any,  # noqa: ASYNC109 (aiohttp's signature)
    ) -> ResponseHandler:
        proto = await super()._create_connection(req, traces, timeout)
        transport = proto.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        peer = peer_credentials(sock) if sock is not None else None
        uid = peer.uid if peer is not None else None
        if uid is None or uid not in (os.geteuid(), 0):
            proto.close()
            raise UntrustedServer(self.path, uid)
        return proto


class RpcClient:
    """One connection pool to the socket; use as `async with RpcClient(path) as client`."""

    def __init__(self, socket_path: Path, *, timeout_s: float = 30.0) -> None:
        self.socket_path = socket_path
        self._session = aiohttp.ClientSession(
            connector=PeerCheckingConnector(path=str(socket_path)),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        )
        self._ids = itertools.count(1)

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """The method's result, or RpcError with the service's code and message."""
        request = {"jsonrpc": "2.0", "id": next(self._ids), "method": method}
        if params is not None:
            request["params"] = params
        answer = await self.post(request)
        if "error" in answer:
            error = answer["error"]
            raise RpcError(error.get("code", 0), error.get("message", ""), error.get("data"))
        return answer["result"]

    async def post(self, payload: Any) -> Any:
        """POST any JSON to /rpc; the decoded answer (None for 204)."""
        async with self._session.post("http://localhost/rpc", json=payload) as response:
            if response.status == 204:
                return None
            text = await response.text()
            try:
                return json.loads(text)
            except ValueError:
                raise RpcError(
                    0, f"the service answered HTTP {response.status}, not JSON-RPC"
                ) from None

    async def get(self, path: str) -> tuple[int, Any]:
        async with self._session.get(f"http://localhost{path}") as response:
            return response.status, await response.json(content_type=None)
