"""Calling a JSON-RPC service on a Unix socket (the CLI's `rpc` command, tests, benchmarks)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import aiohttp


class RpcError(Exception):
    """The service answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} ({code})")
        self.code, self.message, self.data = code, message, data


class RpcClient:
    """One connection pool to the socket; use as `async with RpcClient(path) as client`."""

    def __init__(self, socket_path: Path, *, timeout_s: float = 30.0) -> None:
        self.socket_path = socket_path
        self._session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(socket_path)),
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
