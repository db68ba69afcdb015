#!/usr/bin/env python3
"""What open connections cost a real `hero-onboarding server`: memory, and /health latency.

1. RSS before, during and after `--bodies` clients (200) each hold an unfinished webhook body
   of nearly --webhook-max-bytes (1 MiB), spread over loopback addresses 127.0.0.x so the
   per-client cap (64) lets them all in; "after" is measured once RSS settles.
2. /health on fresh connections while `--idle` connections (900) that sent nothing are open.

Timeouts are raised for the run (head 60 s, body 120 s) so the clients stay while measured.

    .venv/bin/python scripts/bench_connections.py [--bodies 200] [--idle 900]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import psutil  # noqa: E402

from tests.processes import CLI, HERMETIC, free_port, http_status  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

SECRET = "whsec_bench_" + "5e" * 16
PER_ADDRESS = 50  # below the default per-client cap of 64
BODY_BYTES = 1 << 20


def mib(process: psutil.Process) -> float:
    return process.memory_info().rss / (1 << 20)


def settle(process: psutil.Process, timeout: float = 20) -> float:
    """RSS once it has not changed by more than 0.5 MiB for 3 s (or after `timeout`)."""
    deadline = time.monotonic() + timeout
    samples = [mib(process)]
    while time.monotonic() < deadline:
        time.sleep(0.5)
        samples.append(mib(process))
        recent = samples[-7:]
        if len(recent) == 7 and max(recent) - min(recent) < 0.5:
            break
    return samples[-1]


async def open_from(port: int, n: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    source = f"127.0.0.{10 + n // PER_ADDRESS}"
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def hold_bodies(port: int, count: int) -> list[asyncio.StreamWriter]:
    head = (
        "POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Stripe-Signature: t=1,v1=00\r\nContent-Length: {BODY_BYTES}\r\n\r\n"
    ).encode()
    chunk = b"{" + b" " * (BODY_BYTES - 2)  # all but the last byte

    async def one(n: int) -> asyncio.StreamWriter:
        _, writer = await open_from(port, n)
        writer.write(head + chunk)
        await writer.drain()
        return writer

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def health_times(port: int, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=("127.0.0.3", 0)
        )
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status = await asyncio.wait_for(reader.readline(), 10)
        await reader.read()
        writer.close()
        times.append(time.perf_counter() - started)
        assert status.startswith(b"HTTP/1.1 200"), status
    return times


async def hold_idle(port: int, count: int) -> list[asyncio.StreamWriter]:
    return [(await open_from(port, n))[1] for n in range(count)]


def report_times(label: str, times: list[float]) -> None:
    ms = sorted(t * 1000 for t in times)
    print(
        f"{label}: p50 {statistics.median(ms):.1f} ms, "
        f"p95 {ms[int(len(ms) * 0.95) - 1]:.1f} ms, max {ms[-1]:.1f} ms"
    )


async def bench(port: int, process: psutil.Process, bodies: int, idle: int) -> None:
    before = settle(process)
    print(f"RSS before: {before:.1f} MiB")
    writers = await hold_bodies(port, bodies)
    wait_until(lambda: mib(process) > before + bodies * 0.5, timeout=30, what="bodies arrive")
    during = await asyncio.to_thread(settle, process, 10)
    print(f"RSS during {bodies} unfinished {BODY_BYTES >> 10} KiB bodies: {during:.1f} MiB")
    report_times("  /health meanwhile", await health_times(port, 20))
    for writer in writers:
        writer.transport.abort()
    await asyncio.sleep(0.1)  # the aborts happen on this loop: let it run them
    after = await asyncio.to_thread(settle, process)
    print(f"RSS after they left: {after:.1f} MiB")

    report_times("/health, no other connections", await health_times(port, 50))
    idlers = await hold_idle(port, idle)
    report_times(f"/health with {idle} idle connections open", await health_times(port, 50))
    for writer in idlers:
        writer.transport.abort()
    await asyncio.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bodies", type=int, default=200)
    parser.add_argument("--idle", type=int, default=900)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                [
                    CLI, "server", "--data-dir", f"{tmp}/data", "--port", str(port),
                    "--mode", "sandbox", "--provider", "stub",
                    "--request-head-timeout-s", "60", "--body-timeout-s", "120",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **HERMETIC, "STRIPE_WEBHOOK_SIGNING_KEY": SECRET},
            )  # fmt: skip
        try:
            wait_until(
                lambda: http_status(f"http://127.0.0.1:{port}/ready") == 200,
                timeout=30,
                what="the server is ready",
            )
            asyncio.run(bench(port, psutil.Process(server.pid), args.bodies, args.idle))
        finally:
            server.terminate()
            server.wait(timeout=20)
        print(f"server log: {log_path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
