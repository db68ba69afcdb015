"""Asking a daemon whether it answers: GET /health over TCP, or over the admin Unix socket.

Every daemon's /health says its pid, so an answer counts only when it comes from the process
we started: another installation (or a leftover) on the same port is not "healthy".
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
import psutil

from ..rpc.client import PeerCheckingConnector, UntrustedServer
from .daemons import DaemonSpec, Health

PROBE_TIMEOUT_S = 2.0
POLL_S = 0.1
OK = "ok"

Pids = Callable[[], Awaitable[dict[str, int | None]]]


async def probe(health: Health, path: str = "/health", timeout_s: float = PROBE_TIMEOUT_S) -> str:
    """ "ok", or why not (one short phrase, safe to print)."""
    answer, _ = await _ask(health, path, timeout_s)
    return answer


async def probe_process(health: Health, pid: int | None) -> str:
    """ "ok" only if /health answers and names `pid` as the process answering."""
    answer, answered_by = await _ask(health, "/health", PROBE_TIMEOUT_S)
    if answer != OK:
        return answer
    if pid is None:
        return "starting"
    if answered_by is None:
        return "answered without a pid (an older version still running?)"
    if answered_by != pid and answered_by not in _descendants(pid):
        return f"port answered by another process (pid {answered_by})"
    return OK


def _descendants(pid: int) -> set[int]:
    """A supervisor may run the daemon through a wrapper (`sh -c`): its children count too."""
    try:
        return {child.pid for child in psutil.Process(pid).children(recursive=True)}
    except psutil.Error:
        return set()


async def _ask(health: Health, path: str, timeout_s: float) -> tuple[str, int | None]:
    if health.socket is not None:
        # A socket answered by another user's process is not our daemon, however it answers.
        connector: aiohttp.BaseConnector = PeerCheckingConnector(path=str(health.socket))
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
            body = await response.read()
            if response.status != 200:
                return f"HTTP {response.status}", None
    except TimeoutError:
        return "timed out", None
    except UntrustedServer:
        return "answered by a process of another user", None
    except (aiohttp.ClientError, OSError):
        return "not answering", None
    try:
        pid = json.loads(body).get("pid")
    except (ValueError, AttributeError):
        pid = None
    return OK, pid if isinstance(pid, int) else None


async def wait_healthy(
    specs: Sequence[DaemonSpec],
    timeout_s: float,
    pids: Pids,
    *,
    alive: Callable[[], bool] = lambda: True,
) -> dict[str, str]:
    """Poll every daemon until each answers as the process `pids()` names for it, the deadline
    passes, or `alive()` says what starts them is gone; the last answer of each."""
    deadline = time.monotonic() + timeout_s
    answers = {spec.name: "not answering" for spec in specs}
    while True:
        expected = await pids()
        pending = [spec for spec in specs if answers[spec.name] != OK]
        results = await asyncio.gather(
            *(probe_process(spec.health, expected.get(spec.name)) for spec in pending)
        )
        answers.update({spec.name: result for spec, result in zip(pending, results, strict=True)})
        if (
            all(answer == OK for answer in answers.values())
            or time.monotonic() > deadline
            or not alive()
        ):
            return answers
        await asyncio.sleep(POLL_S)
