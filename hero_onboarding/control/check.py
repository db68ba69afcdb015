"""`hero-onboarding check`: is this installation able to run, and does the running one answer?

Prints one line per check (`ok` or `FAIL`, what, why) and exits 1 if any failed. Secrets are
named with where they were found, never shown.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import apsw
import click

from ..config import ConfigError, Settings, load_settings
from ..store import reconcile_runs
from ..store.migrations import SCHEMA_VERSION
from ..store.reconcile_runs import ReconcileRun, RunOutcome, RunsSummary
from .daemons import Health
from .errors import EXIT_FAILURE, EXIT_OK
from .health import probe
from .sandbox_keys import FILE_NAME as SANDBOX_KEYS
from .secrets import SecretsError, look_up, server_secrets
from .service import current_state
from .service_state import ServiceState

# A run's counts, in the order a reader wants them.
COUNTS_SHOWN: Final = ("checked", "credited", "refunded", "already_done", "not_credited")


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'}  {self.what}: {self.detail}"


@click.command("check")
@click.pass_context
def check_command(ctx: click.Context) -> None:
    """Check the install: settings, secrets (names only), database; then, if the service runs,
    that its daemons answer /health, /ready and /openrpc.json; last, how reconciliation with the
    provider went. Settings come from HERO_ONBOARDING_* variables, as the daemons read them."""
    findings = asyncio.run(_check(dict(os.environ)))
    for finding in findings:
        click.echo(finding.line())
    ctx.exit(EXIT_OK if all(f.ok for f in findings) else EXIT_FAILURE)


async def _check(env: dict[str, str]) -> list[Finding]:
    try:
        settings = load_settings(env)
    except ConfigError as exc:
        return [Finding(False, "settings", str(exc))]
    findings = [Finding(True, "settings", f"data dir {settings.data_dir}, {settings.mode} mode")]
    state = await current_state(settings, env)
    findings.append(await _secrets(settings, env, state))
    findings.append(_database(settings))
    if not state.running:
        findings.append(Finding(True, "service", "not running (start it with --start)"))
        findings.append(_reconcile(settings, schedule_on=False))
        return findings
    findings.append(Finding(True, "service", f"running under {state.backend}"))
    public = Health(url=f"{state.public_url}/health")
    admin = Health(socket=settings.admin_socket_path)
    for what, health, path in (
        ("public /health", public, "/health"),
        ("public /ready", public, "/ready"),
        ("admin /health", admin, "/health"),
        ("admin /openrpc.json", admin, "/openrpc.json"),
    ):
        answer = await probe(health, path)
        findings.append(Finding(answer == "ok", what, answer))
    findings.append(_reconcile(settings, schedule_on=settings.reconcile_interval_s > 0))
    return findings


async def _secrets(settings: Settings, env: dict[str, str], state: ServiceState) -> Finding:
    if state.sandbox:
        return Finding(True, "secrets", f"sandbox test keys in {settings.data_dir / SANDBOX_KEYS}")
    try:
        lookup = await look_up(env, sandbox_mode=settings.mode == "sandbox")
    except SecretsError as exc:
        return Finding(False, "secrets", str(exc))
    try:
        server_secrets(lookup, provider=settings.provider)
    except SecretsError as exc:
        return Finding(False, "secrets", str(exc))
    found = ", ".join(f"{name} ({source})" for name, (_, source) in sorted(lookup.found.items()))
    return Finding(True, "secrets", found or f"none needed for --provider={settings.provider}")


def _database(settings: Settings) -> Finding:
    path = settings.db_path
    if not path.exists():
        return Finding(True, "database", f"{path} not created yet (made at first start)")
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            version = conn.execute("PRAGMA user_version").get
        finally:
            conn.close()
    except apsw.Error as exc:
        return Finding(False, "database", f"{path} unreadable: {exc}")
    if version == SCHEMA_VERSION:
        return Finding(True, "database", f"{path}, schema version {version} (current)")
    if version < SCHEMA_VERSION:
        return Finding(True, "database", f"schema version {version}; migrates at next start")
    return Finding(False, "database", f"schema version {version} is newer than this release's")


def _reconcile(settings: Settings, *, schedule_on: bool) -> Finding:
    """The last reconciliation run, from the database (read-only, like `_database`)."""
    path = settings.db_path
    if not path.exists():
        return Finding(True, "reconcile", "no run recorded yet")
    now = int(time.time())
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            if not conn.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'reconcile_runs'"
            ).get:
                return Finding(True, "reconcile", "no run recorded yet (schema migrates at start)")
            summary = reconcile_runs.summary(conn, now=now)
        finally:
            conn.close()
    except apsw.Error as exc:
        return Finding(False, "reconcile", f"runs unreadable: {exc}")
    return reconcile_finding(
        summary, interval_s=settings.reconcile_interval_s, schedule_on=schedule_on, now=now
    )


def reconcile_finding(
    summary: RunsSummary, *, interval_s: int, schedule_on: bool, now: int
) -> Finding:
    """FAIL when the last run failed, or, while the schedule runs, when the last success is
    more than two intervals old (one missed run is a blip, two are a pattern)."""
    last, good, now_running = summary.last_run, summary.last_success, summary.running
    going = ""
    if now_running is not None:
        going = f"; run #{now_running.id} under way, started {_when(now_running.started_at, now)}"
    if last is None:
        return Finding(True, "reconcile", f"no run recorded yet{going}")
    if last.outcome is RunOutcome.FAILED:
        return Finding(
            False,
            "reconcile",
            f"last run {_described(last, now)} failed: {last.error}; last success "
            f"{_when(good.finished_at, now) if good else 'never'}{going}",
        )
    stale = good is None or good.finished_at is None or now - good.finished_at > 2 * interval_s
    if schedule_on and stale:
        return Finding(
            False,
            "reconcile",
            f"last success {_described(good, now) if good else 'never'}: more than twice "
            f"--reconcile-interval-s={interval_s} ago; is the admin daemon's schedule running?",
        )
    counted = last.counts or {}
    counts = ", ".join(
        f"{counted[name]} {name.replace('_', ' ')}" for name in COUNTS_SHOWN if name in counted
    )
    schedule = f"every {interval_s} s" if schedule_on else "schedule not running"
    return Finding(True, "reconcile", f"last run {_described(last, now)} ok ({counts}); {schedule}")


def _described(run: ReconcileRun, now: int) -> str:
    return f"#{run.id} ({run.trigger.value}) {_when(run.finished_at or run.started_at, now)}"


def _when(at: int | None, now: int) -> str:
    if at is None:
        return "never"
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"at {stamp} ({max(now - at, 0)} s ago)"
