#!/usr/bin/env python3
"""Benchmark `hero-onboarding --start --sandbox`: seconds until every daemon answers /health,
each daemon's RSS once up, and `--stop` seconds; R rounds, each in a fresh temp Hero home.

`--settle S` reads each daemon's RSS again S seconds after it is up, so what a daemon imports
lazily on its first timed work (the admin daemon's first reconciliation run, 5 s after boot)
shows too: "once up" alone would flatter an import that is only late, not avoided.

    .venv/bin/python scripts/bench_start.py [--rounds 5] [--settle 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import psutil  # noqa: E402

from tests.processes import free_port, run_cli  # noqa: E402


def rss_of(status: Mapping[str, object]) -> dict[str, int]:
    daemons = status["daemons"]
    assert isinstance(daemons, list)
    rss = {d["name"]: d["rss_bytes"] for d in daemons}
    supervisor_pid = status["supervisor_pid"]
    assert isinstance(supervisor_pid, int)
    rss["supervisor"] = psutil.Process(supervisor_pid).memory_info().rss
    return rss


def one_round(settle_s: float) -> tuple[float, float, dict[str, int], dict[str, int]]:
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="hb") as home:
        env = {
            "HOME": home,
            "HERO_SOCKET_DIR": f"{home}/s",
            "HERO_PROC_SOCKET": "",  # a real hero_proc on this machine is not what we measure
            "HERO_ONBOARDING_PORT": str(free_port()),
            "HERO_ONBOARDING_SANDBOX_PORT": str(free_port()),
        }
        began = time.perf_counter()
        started = run_cli("--start", "--sandbox", env=env, timeout=120)
        start_s = time.perf_counter() - began
        if started.returncode != 0:
            raise SystemExit(f"--start failed: {started.stderr}")
        rss = rss_of(json.loads(run_cli("--status", "--json", env=env).stdout))
        settled = rss
        if settle_s > 0:
            time.sleep(settle_s)  # a measurement later on, not a wait for a condition
            settled = rss_of(json.loads(run_cli("--status", "--json", env=env).stdout))
        began = time.perf_counter()
        stopped = run_cli("--stop", env=env, timeout=120)
        stop_s = time.perf_counter() - began
        if stopped.returncode != 0:
            raise SystemExit(f"--stop failed: {stopped.stderr}")
        return start_s, stop_s, rss, settled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--settle", type=float, default=0.0, help="seconds; RSS again then")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {psutil.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    starts, stops, sizes, later = [], [], [], []
    for number in range(1, args.rounds + 1):
        start_s, stop_s, rss, settled = one_round(args.settle)
        starts.append(start_s)
        stops.append(stop_s)
        sizes.append(rss)
        later.append(settled)
        shown = ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in sorted(rss.items()))
        print(f"round {number}: --start {start_s:.2f} s, --stop {stop_s:.2f} s; RSS {shown}")
    print(f"--start to healthy: median {statistics.median(starts):.2f} s, max {max(starts):.2f} s")
    print(f"--stop: median {statistics.median(stops):.2f} s")
    for name in sorted(sizes[0]):
        median = statistics.median(size[name] for size in sizes)
        print(f"RSS {name}: median {median / 2**20:.1f} MiB")
    if args.settle > 0:
        for name in sorted(later[0]):
            median = statistics.median(size[name] for size in later)
            print(f"RSS {name} {args.settle:g} s after up: median {median / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
