"""Asking a daemon whether it answers: GET /health over TCP, or over the admin Unix socket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import aiohttp

from .daemons import DaemonSpec, Health

PROBE_TIMEOUT_S = 2.0
POLL_S = 0.1


async def probe(health: Health, path: str = "/health", timeout_s: float = PROBE_TIMEOUT_S) -> str:
    """ "ok", or why not (one short phrase, safe to print)."""
    if health.socket is not None:
        connector: aiohttp.BaseConnector = aiohttp.UnixConnector(path=str(health.socket))
        url = f"http://localhost{path}"
    else:
        assert health.url is not None
        connector = aiohttp.TCPConnector()
        url = health.url.removesuffix("/health") + path
    try:
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as session,
            session.get(url) as response,
        ):
            await response.read()
            return "ok" if response.status == 200 else f"HTTP {response.status}"
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return "not answering" if not isinstance(exc, TimeoutError) else "timed out"


async def wait_healthy(
    specs: Sequence[DaemonSpec], timeout_s: float, *, alive: Callable[[], bool] = lambda: True
) -> dict[str, str]:
    """Poll every daemon until all answer, the deadline passes, or `alive()` says the thing
    starting them is gone; the last answer of each."""
    deadline = time.monotonic() + timeout_s
    answers = {spec.name: "not answering" for spec in specs}
    while True:
        pending = [spec for spec in specs if answers[spec.name] != "ok"]
        results = await asyncio.gather(*(probe(spec.health) for spec in pending))
        answers.update({spec.name: result for spec, result in zip(pending, results, strict=True)})
        if (
            all(answer == "ok" for answer in answers.values())
            or time.monotonic() > deadline
            or not alive()
        ):
            return answers
        await asyncio.sleep(POLL_S)
