"""A stand-in for a Mycelium node's message API (no node can run here).

It speaks the documented wire shape of the node's message API:
`POST /api/v1/messages` with `{"dst": {"ip": v6} | {"pk": hex}, "topic": b64?, "payload": b64}`
answers 201 `{"id": <16 hex>}`; a malformed body answers 400. `answer_with` makes it answer
something else (the node refusing), and `received` keeps what a recipient node would get.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import secrets
from dataclasses import dataclass, field

from aiohttp import web

CODE = re.compile(r"\b([0-9A-Z]{5}-[0-9A-Z]{5})\b")


@dataclass(frozen=True)
class NodeMessage:
    address: str
    topic: str
    text: str


@dataclass
class FakeNode:
    received: list[NodeMessage] = field(default_factory=list)
    answer_with: int | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v1/messages", self.push)
        return app

    async def push(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            address = str(ipaddress.IPv6Address(body["dst"]["ip"]))
            payload = base64.b64decode(body["payload"], validate=True)
            topic = base64.b64decode(body.get("topic", ""), validate=True).decode()
        except (ValueError, KeyError, TypeError, binascii.Error):
            return web.json_response({"error": "bad message"}, status=400)
        if self.answer_with is not None:
            return web.json_response({"error": "refused"}, status=self.answer_with)
        self.received.append(NodeMessage(address, topic, payload.decode()))
        return web.json_response({"id": secrets.token_hex(8)}, status=201)

    def last_code(self, address: str) -> str:
        """The code in the newest message to `address`, as its owner would read it."""
        for message in reversed(self.received):
            if message.address == address:
                found = CODE.search(message.text)
                assert found, f"no code in {message.text!r}"
                return found.group(1)
        raise AssertionError(f"no message reached {address}")
