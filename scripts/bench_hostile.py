"""/health and signed-webhook latency under hostile bodies, against a real server, one run.

Phases: baseline; four senders looping a gzip bomb (1 MB inflating to 1 GiB); an unsigned
webhook flood of about 1,100/s from a separate process. Prints median/p99 per phase and the
ratio to the baseline. Run: .venv/bin/python scripts/bench_hostile.py
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hostile_kit import gzip_bomb, raw_post
from tests.processes import ServerProcess, free_port, start_server
from tests.test_hostile_bodies import ENV, UNSIGNED, health_latency, signed_webhook

SAMPLES_HEALTH = 200
SAMPLES_WEBHOOK = 50
FLOOD_PER_S = 1100


def _flood(url: str, stop: multiprocessing.synchronize.Event) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as http:

            async def one() -> None:
                async with http.post(url, data=b'{"id": "evt_x"}', headers=UNSIGNED) as r:
                    await r.read()

            started, sent, tasks = time.monotonic(), 0, set()
            while not stop.is_set():
                due = int((time.monotonic() - started) * FLOOD_PER_S)
                while sent < due:
                    task = asyncio.create_task(one())
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                    sent += 1
                await asyncio.sleep(0.005)
            await asyncio.gather(*tasks, return_exceptions=True)
            print(f"flood: {sent / (time.monotonic() - started):.0f}/s sent", flush=True)

    asyncio.run(main())


def _figures(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def _measure(server: ServerProcess) -> dict[str, tuple[float, float]]:
    async with aiohttp.ClientSession() as http:
        health = [await health_latency(http, server) for _ in range(SAMPLES_HEALTH)]
        hooks = [await signed_webhook(http, server) for _ in range(SAMPLES_WEBHOOK)]
    return {"health": _figures(health), "webhook": _figures(hooks)}


async def _during(
    server: ServerProcess, start: Callable[[], Awaitable[Callable[[], Awaitable[None]]]]
) -> dict[str, tuple[float, float]]:
    stop = await start()
    try:
        return await _measure(server)
    finally:
        await stop()


async def main() -> None:
    gzip_bomb()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "data", port=free_port(), env=ENV)
        try:
            results = {"baseline": await _measure(server)}

            async def bombs() -> Callable[[], Awaitable[None]]:
                done = asyncio.Event()

                async def loop(path: str) -> None:
                    while not done.is_set():
                        await raw_post(
                            server.port, path, gzip_bomb(), headers={"Content-Encoding": "gzip"}
                        )

                paths = ("/webhooks/stripe", "/health", "/payment/intent", "/nowhere")
                tasks = [asyncio.create_task(loop(p)) for p in paths]

                async def stop() -> None:
                    done.set()
                    await asyncio.gather(*tasks)

                return stop

            async def flood() -> Callable[[], Awaitable[None]]:
                stop_event = multiprocessing.Event()
                proc = multiprocessing.Process(
                    target=_flood, args=(server.url + "/webhooks/stripe", stop_event)
                )
                proc.start()
                await asyncio.sleep(1.0)  # let the flood reach its rate before measuring

                async def stop() -> None:
                    stop_event.set()
                    await asyncio.to_thread(proc.join, 30)

                return stop

            results["gzip bombs x4"] = await _during(server, bombs)
            results[f"unsigned flood {FLOOD_PER_S}/s"] = await _during(server, flood)
        finally:
            server.process.send_signal(signal.SIGTERM)
            server.process.wait(timeout=30)
    base = results["baseline"]
    print(f"{'phase':<24}{'what':<9}{'median ms':>10}{'p99 ms':>9}{'x median':>10}{'x p99':>8}")
    for phase, figures in results.items():
        for what, (median, p99) in figures.items():
            print(
                f"{phase:<24}{what:<9}{median * 1e3:>10.1f}{p99 * 1e3:>9.1f}"
                f"{median / base[what][0]:>10.2f}{p99 / base[what][1]:>8.2f}"
            )


if __name__ == "__main__":
    asyncio.run(main())
