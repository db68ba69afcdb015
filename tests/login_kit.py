"""Logging in over HTTP as a browser without JavaScript does: cookies kept, forms posted."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
NONCE = re.compile(r"--challenge (\S+)")
CHALLENGE_ID = re.compile(r'name="challenge" value="([^"]+)"')
SERVER_KEY = re.compile(r"--server-key ([0-9a-f]{64})")


def shown(pattern: re.Pattern[str], html: str) -> str:
    """The first group of `pattern` in a page, asserting the page shows it."""
    found = pattern.search(html)
    assert found is not None, f"{pattern.pattern!r} not in {html[:300]}"
    return found.group(1)


@dataclass(frozen=True)
class Reply:
    status: int
    html: str
    location: str | None
    headers: dict[str, str]

    @property
    def challenge_id(self) -> str:
        assert self.location is not None, f"no redirect ({self.status}): {self.html[:300]}"
        return parse_qs(urlsplit(self.location).query)["challenge"][0]


class Browser:
    """One visitor: a cookie jar (the test client's), the CSRF token its pages gave it."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.csrf = ""

    async def get(self, path: str | None) -> Reply:
        assert path is not None, "no page to go to (a missing Location?)"
        async with self.client.get(path, allow_redirects=False) as response:
            return await self._read(response)

    async def post(self, path: str, form: dict[str, str], *, csrf: bool = True) -> Reply:
        if csrf and not self.csrf:
            await self.get("/")
        data = {**({"csrf_token": self.csrf} if csrf else {}), **form}
        async with self.client.post(path, data=data, allow_redirects=False) as response:
            return await self._read(response)

    async def _read(self, response: ClientResponse) -> Reply:
        """The page, remembering the CSRF token it carries, as the next form will need it."""
        html = await response.text()
        if found := CSRF.search(html):
            self.csrf = found.group(1)
        return Reply(
            response.status, html, response.headers.get("Location"), dict(response.headers)
        )

    async def ask_for_code(self, address: str) -> Reply:
        return await self.post("/login", {"address": address})

    async def answer(self, challenge_id: str, **fields: str) -> Reply:
        return await self.post("/login/verify", {"challenge": challenge_id, **fields})

    def cookie(self, name: str) -> str | None:
        for cookie in self.client.session.cookie_jar:
            if cookie.key == name:
                return cookie.value
        return None
