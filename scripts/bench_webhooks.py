#!/usr/bin/env python3
"""Benchmark the Stripe webhook endpoint of a real `hero-onboarding server` process.

Sends N signed `checkout.session.completed` events (new payments mixed with re-deliveries) at
concurrency C from a separate process, prints events/s and p50/p99 latency, checks that every
payment was credited exactly once, then measures a trivial aiohttp handler the same way and
prints the ratio webhook/trivial.

    .venv/bin/python scripts/bench_webhooks.py [--events 20000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import apsw  # noqa: E402
import psutil  # noqa: E402

from hero_onboarding.store import Store, users  # noqa: E402
from hero_onboarding.store.checkouts import CheckoutSession  # noqa: E402
from hero_onboarding.store.rows import integer, one_int, text  # noqa: E402
from scripts.loadgen import LoadResult, build_post, run_load  # noqa: E402
from tests.processes import CLI, free_port, http_status  # noqa: E402
from tests.seeding import checkout, insert_checkouts  # noqa: E402
from tests.stripe_events import body_of, checkout_event, new_id, sign  # noqa: E402
from tests.waiting import wait_until  # noqa: E402

SECRET = "whsec_bench_" + "5e" * 16


def seed_users(db_path: Path, count: int) -> list[str]:
    async def go() -> list[str]:
        store = await Store.open(db_path)
        try:
            return [
                (
                    await store.write(
                        partial(
                            users.register,
                            address=f"4{i:02x}::{i:x}",
                            currency="usd",
                            now=int(time.time()),
                        )
                    )
                ).sid
                for i in range(count)
            ]
        finally:
            await store.close()

    return asyncio.run(go())


def seed_checkouts(db_path: Path, opened: list[CheckoutSession]) -> None:
    """The checkouts the deliveries pay, as the service records them when it opens one."""

    async def go() -> None:
        store = await Store.open(db_path)
        try:
            await store.write(partial(insert_checkouts, opened=opened))
        finally:
            await store.close()

    asyncio.run(go())


def make_events(
    sids: list[str], count: int, duplicate_share: float, rng: random.Random
) -> tuple[list[tuple[str, str]], dict[str, tuple[str, int]], list[CheckoutSession]]:
    """Signed (body, header) pairs, the unique payments they carry (pi -> (sid, amount)), and
    the checkouts those payments are for."""
    deliveries: list[tuple[str, str]] = []
    payments: dict[str, tuple[str, int]] = {}
    opened: list[CheckoutSession] = []
    for _ in range(count):
        if deliveries and rng.random() < duplicate_share:
            deliveries.append(rng.choice(deliveries))  # Stripe re-delivering the same event
            continue
        sid, amount, pi = rng.choice(sids), rng.randrange(500, 100_000), new_id("pi")
        evt = checkout_event(
            "checkout.session.completed", sid=sid, amount=amount, payment_intent=pi
        )
        body = body_of(evt)
        deliveries.append((body, sign(body, SECRET)))
        payments[pi] = (sid, amount)
        opened.append(checkout(sid, evt["data"]["object"]["id"], amount))
    return deliveries, payments, opened


def client_process(port: int, requests: list[bytes], concurrency: int) -> LoadResult:
    return asyncio.run(run_load(port, requests, concurrency))


def load_from_another_process(
    server: subprocess.Popen[bytes], port: int, requests: list[bytes], concurrency: int
) -> tuple[LoadResult, float]:
    """Run the load from a fresh process; also return the server's CPU seconds per request."""
    cpu = psutil.Process(server.pid)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        before = cpu.cpu_times()
        result = pool.apply(client_process, (port, requests, concurrency))
        after = cpu.cpu_times()
    used = after.user + after.system - before.user - before.system
    return result, used / len(requests)


def start(command: list[str], port: int, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    wait_until(
        lambda: process.poll() is not None or http_status(f"http://127.0.0.1:{port}/health") == 200,
        timeout=30,
        what=f"{command[0]} answers /health",
    )
    if process.poll() is not None:
        raise SystemExit(f"{command} exited early:\n{log.read_text()}")
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def check_exactly_once(
    db_path: Path, payments: dict[str, tuple[str, int]], result: LoadResult
) -> list[str]:
    problems = []
    if bad := [s for s in result.statuses if s != 200]:
        problems.append(f"{len(bad)} non-200 answers ({sorted(set(bad))})")
    credited = sum(json.loads(b)["outcome"] == "credited" for b in result.bodies)
    if credited != len(payments):
        problems.append(f"{credited} 'credited' answers for {len(payments)} unique payments")
    expected: dict[str, int] = {}
    for sid, amount in payments.values():
        expected[sid] = expected.get(sid, 0) + amount
    conn = apsw.Connection(str(db_path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = conn.execute("SELECT sid, credit_balance FROM billing")
        balances = {text(sid): integer(balance) for sid, balance in rows}
        events = one_int(conn, "SELECT COUNT(*) FROM payment_events")
    finally:
        conn.close()
    if events != len(payments):
        problems.append(f"{events} ledger rows for {len(payments)} unique payments")
    if wrong := [sid for sid, total in balances.items() if total != expected.get(sid, 0)]:
        problems.append(f"{len(wrong)} balances differ from the sum of their unique payments")
    return problems


TRIVIAL_SERVER = """
import sys
from aiohttp import web
async def ok(request):
    await request.read()
    return web.json_response({"received": True})
app = web.Application(client_max_size=1 << 20)
app.router.add_post("/webhooks/stripe", ok)
app.router.add_get("/health", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def signed_requests(deliveries: list[tuple[str, str]], port: int) -> list[bytes]:
    headers = {"Content-Type": "application/json"}
    return [
        build_post("/webhooks/stripe", body.encode(), {**headers, "Stripe-Signature": sig}, port)
        for body, sig in deliveries
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000, help="deliveries per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each server")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duplicates", type=float, default=0.2, help="share of re-deliveries")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--log-level", default="info", help="server log level (default info)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, SQLite {apsw.sqlite_lib_version()}, "
        "synchronous=FULL"
    )
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp:
        data_dir = Path(tmp) / "data"
        sids = seed_users(data_dir / "onboarding.db", args.users)
        rounds = [make_events(sids, args.events, args.duplicates, rng) for _ in range(args.rounds)]
        payments = {pi: paid for _, paid_now, _ in rounds for pi, paid in paid_now.items()}
        seed_checkouts(data_dir / "onboarding.db", [c for *_, opened in rounds for c in opened])
        print(
            f"{args.rounds} rounds x {args.events} deliveries (~{1 - args.duplicates:.0%} new "
            f"payments, the rest re-deliveries), concurrency {args.concurrency}, "
            f"body ~{len(rounds[0][0][0][0])} bytes"
        )

        port, trivial_port = free_port(), free_port()
        env = {
            **os.environ,
            "STRIPE_WEBHOOK_SIGNING_KEY": SECRET,
            "STRIPE_SANDBOX_SECRET_KEY": "sk_test_bench",  # no checkout is opened here
        }
        server = start(
            [
                CLI,
                "server",
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
                "--log-level",
                args.log_level,
            ],
            port,
            Path(tmp) / "server.log",
            env,
        )
        trivial_server = start(
            [sys.executable, "-c", TRIVIAL_SERVER, str(trivial_port)],
            trivial_port,
            Path(tmp) / "trivial.log",
            env,
        )
        webhook_runs: list[LoadResult] = []
        trivial_runs: list[LoadResult] = []
        webhook_cpu: list[float] = []
        trivial_cpu: list[float] = []
        try:
            for number, (deliveries, _, _) in enumerate(rounds, start=1):
                result, cpu = load_from_another_process(
                    server, port, signed_requests(deliveries, port), args.concurrency
                )
                webhook_runs.append(result)
                webhook_cpu.append(cpu)
                print(
                    f"round {number}: webhook {result.summary()}, server CPU {cpu * 1e6:.0f} us/req"
                )
                result, cpu = load_from_another_process(
                    trivial_server,
                    trivial_port,
                    signed_requests(deliveries, trivial_port),
                    args.concurrency,
                )
                trivial_runs.append(result)
                trivial_cpu.append(cpu)
                print(
                    f"round {number}: trivial {result.summary()}, server CPU {cpu * 1e6:.0f} us/req"
                )
        finally:
            stop(server)
            stop(trivial_server)
        commits = [
            line
            for line in (Path(tmp) / "server.log").read_text().splitlines()
            if "database closed" in line
        ]
        if commits:
            print("server: " + commits[-1].split(": ", 1)[1])

        combined = LoadResult(
            [s for run in webhook_runs for s in run.statuses],
            [b for run in webhook_runs for b in run.bodies],
            [lat for run in webhook_runs for lat in run.latencies_s],
            sum(run.elapsed_s for run in webhook_runs),
        )
        problems = check_exactly_once(data_dir / "onboarding.db", payments, combined)
        webhook_rate = statistics.median(run.rate for run in webhook_runs)
        trivial_rate = statistics.median(run.rate for run in trivial_runs)
        print(
            f"webhook: median {webhook_rate:,.0f} events/s, "
            f"p50 {combined.percentile_ms(0.5):.2f} ms, p99 {combined.percentile_ms(0.99):.2f} ms"
        )
        print(f"trivial: median {trivial_rate:,.0f} requests/s")
        print(
            f"server CPU per request: webhook {statistics.median(webhook_cpu) * 1e6:.0f} us, "
            f"trivial {statistics.median(trivial_cpu) * 1e6:.0f} us"
        )
        print(f"ratio webhook/trivial: {webhook_rate / trivial_rate:.2f} (target >= 0.35)")
        if problems:
            print("exactly-once: FAILED: " + "; ".join(problems))
            raise SystemExit(1)
        print(f"exactly-once: OK, {len(payments)} payments each credited once")


if __name__ == "__main__":
    main()
