"""Sending a message to a Mycelium address: through the local node, or a sandbox outbox.

The node's HTTP API: `POST /api/v1/messages` with `{"dst": {"ip": ...}, "topic": b64, "payload":
b64}` answers 201 `{"id"}` once the node has taken the message (it retries delivery for five
minutes on its own). Anything else means the message did not leave.
"""

from __future__ import annotations

import base64
from collections import deque
from dataclasses import dataclass
from typing import Final, Protocol

import aiohttp

from ..errors import UnavailableError

MESSAGES_PATH: Final = "/api/v1/messages"
OUTBOX_SIZE: Final = 200


class NodeError(UnavailableError):
    """The message did not leave; the message is safe to show a user."""


class NodeUnavailable(NodeError, http_status=503):
    """No node answered at the configured URL (down, wrong URL, timed out)."""


class NodeRefused(NodeError, http_status=502):
    """The node answered but did not take the message."""


class MessageSender(Protocol):
    async def send(self, address: str, topic: str, payload: bytes) -> None:
        """Hand the message over, or raise NodeError."""
        ...


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class MyceliumNode:
    """The local Mycelium node's message API, over an aiohttp session the caller owns."""

    def __init__(
        self, api_url: str, http: aiohttp.ClientSession, *, timeout_s: float = 5.0
    ) -> None:
        self._url = api_url.rstrip("/") + MESSAGES_PATH
        self._http = http
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def send(self, address: str, topic: str, payload: bytes) -> None:
        body = {"dst": {"ip": address}, "topic": _b64(topic.encode()), "payload": _b64(payload)}
        try:
            async with self._http.post(self._url, json=body, timeout=self._timeout) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            raise NodeUnavailable("the Mycelium node did not answer") from None
        if status != 201:
            raise NodeRefused(f"the Mycelium node refused the message (HTTP {status})")


@dataclass(frozen=True)
class OutboxMessage:
    address: str
    topic: str
    text: str


class SandboxOutbox:
    """Sandbox mode's stand-in for a node: keeps the last messages for a page to show."""

    def __init__(self) -> None:
        self._messages: deque[OutboxMessage] = deque(maxlen=OUTBOX_SIZE)

    async def send(self, address: str, topic: str, payload: bytes) -> None:
        text = payload.decode("utf-8", errors="replace")
        self._messages.appendleft(OutboxMessage(address, topic, text))

    def messages(self, address: str | None = None) -> list[OutboxMessage]:
        """Newest first; only those to `address` when one is given."""
        return [m for m in self._messages if address is None or m.address == address]
