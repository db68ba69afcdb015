#!/usr/bin/env python3
"""Benchmark the admin daemon: `billing_get` over its Unix socket, from a separate process.

Starts a real `hero-onboarding admin` process on a fresh database with U users, then calls
`billing_get` N times at concurrency C through the project's RpcClient (aiohttp over the Unix
socket, keep-alive), after a warm-up, and prints calls/s and p50/p99 latency per round.

`--baseline DIR` also starts a daemon from another checkout's code (its `hero_onboarding`
package first on PYTHONPATH) on the same database, and alternates rounds between the two, so
a change is compared with the code before it in one run on a shared, noisy machine.

    .venv/bin/python scripts/bench_admin_rpc.py [--calls 20000] [--concurrency 16] [--rounds 3]
        [--baseline /path/to/other/checkout]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import psutil  # noqa: E402

from hero_onboarding.rpc.client import RpcClient  # noqa: E402
from hero_onboarding.store import Store, users  # noqa: E402
from tests.processes import CLI, run_cli  # noqa: E402
from tests.waiting import wait_until  # noqa: E402


async def seed(db_path: Path, count: int) -> list[str]:
    store = await Store.open(db_path)
    try:
        sids = []
        for i in range(count):
            user = await store.write(
                partial(users.register, address=f"4{i:02x}::{i:x}", currency="usd", now=0)
            )
            sids.append(user.sid)
        return sids
    finally:
        await store.close()


async def one_round(
    socket_path: Path, sids: list[str], calls: int, concurrency: int
) -> tuple[float, float, float]:
    latencies: list[float] = []
    queue = iter(range(calls))

    async with RpcClient(socket_path) as client:

        async def worker() -> None:
            for _ in queue:
                started = time.perf_counter()
                result = await client.call("billing_get", {"sid": random.choice(sids)})
                latencies.append(time.perf_counter() - started)
                assert result["balance"] == 0

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return calls / elapsed, latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]


@dataclass
class Daemon:
    """One admin daemon under test: which code it runs, its socket, its process."""

    label: str
    socket_path: Path
    process: subprocess.Popen[bytes]

    @property
    def stats(self) -> psutil.Process:
        return psutil.Process(self.process.pid)


def start_daemon(label: str, home: Path, source: Path | None) -> Daemon:
    sockets = Path(tempfile.mkdtemp(prefix="hs", dir="/tmp"))
    env = {**os.environ, "HOME": str(home), "HERO_SOCKET_DIR": str(sockets)}
    if source is not None:
        env["PYTHONPATH"] = str(source)  # before the editable install's finder
    log = (home / f"admin-{label}.log").open("wb")
    process = subprocess.Popen([CLI, "admin"], stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()
    wait_until(
        lambda: run_cli("rpc", "info", env=env).returncode == 0, timeout=30, what=f"{label} up"
    )
    return Daemon(label, sockets / "hero_onboarding_admin" / "rpc.sock", process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench-admin-"))
    data_dir = home / "hero" / "var" / "hero_onboarding"
    sids = asyncio.run(seed(data_dir / "onboarding.db", args.users))
    daemons: list[Daemon] = []
    try:
        daemons.append(start_daemon("this", home, None))
        if args.baseline is not None:
            daemons.append(start_daemon("baseline", home, args.baseline.resolve()))
        machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
        print(f"machine: {machine}, Python {platform.python_version()}")
        print(f"billing_get x {args.calls}, concurrency {args.concurrency}, {args.users} users")
        for daemon in daemons:
            print(f"{daemon.label}: RSS once up {daemon.stats.memory_info().rss / 2**20:.1f} MiB")
            asyncio.run(one_round(daemon.socket_path, sids, 1000, args.concurrency))  # warm-up
        for number in range(1, args.rounds + 1):
            for daemon in daemons:
                cpu_before = sum(daemon.stats.cpu_times()[:2])
                rate, p50, p99 = asyncio.run(
                    one_round(daemon.socket_path, sids, args.calls, args.concurrency)
                )
                cpu = (sum(daemon.stats.cpu_times()[:2]) - cpu_before) / args.calls
                print(
                    f"round {number} {daemon.label}: {rate:,.0f} calls/s, p50 {p50 * 1000:.2f} ms,"
                    f" p99 {p99 * 1000:.2f} ms, daemon CPU {cpu * 1e6:.0f} us/call"
                )
        for daemon in daemons:
            print(f"{daemon.label}: RSS after {daemon.stats.memory_info().rss / 2**20:.1f} MiB")
    finally:
        for daemon in daemons:
            daemon.process.send_signal(signal.SIGTERM)
            daemon.process.wait(timeout=10)


if __name__ == "__main__":
    main()
