"""Reconciliation's health on the public daemon's /metrics, read from the database per scrape.

The admin daemon runs reconciliation, but it answers only on a 0600 Unix socket, and whoever can
open that socket is an operator: a scraper must not need it. The runs are rows in the shared
database, so the daemon Prometheus already scrapes reports them, read at scrape time (three
indexed lookups on the loop's reader). That also counts the runs of every admin daemon on the
database, and says the truth after either daemon restarts, which in-memory counters would not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import partial

import apsw
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from ..store import Store, StoreError, reconcile_runs
from ..store.reconcile_runs import RunOutcome, RunsSummary
from .metrics import PREFIX

log = logging.getLogger(__name__)


class RunsCollector(Collector):
    """One scrape's snapshot of reconcile_runs as Prometheus families."""

    def __init__(self, summary: RunsSummary) -> None:
        self._summary = summary

    def collect(self) -> Iterator[Metric]:
        summary = self._summary
        last = summary.last_run
        good = summary.last_success
        yield GaugeMetricFamily(
            PREFIX + "reconcile_last_run_timestamp_seconds",
            "When the last finished reconciliation run ended (unix time; 0: never)",
            value=(last.finished_at or 0) if last else 0,
        )
        yield GaugeMetricFamily(
            PREFIX + "reconcile_last_success_timestamp_seconds",
            "When the last successful reconciliation run ended (unix time; 0: never)",
            value=(good.finished_at or 0) if good else 0,
        )
        yield GaugeMetricFamily(
            PREFIX + "reconcile_running",
            "1 while a reconciliation run holds the lease",
            value=int(summary.running is not None),
        )
        runs = CounterMetricFamily(
            PREFIX + "reconcile_runs",
            "Reconciliation runs recorded, by outcome (every admin daemon on this database)",
            labels=["outcome"],
        )
        for outcome in (RunOutcome.OK, RunOutcome.FAILED):
            runs.add_metric([outcome.value], summary.by_outcome.get(outcome, 0))
        yield runs


async def reconcile_exposition(store: Store, *, now: int) -> bytes:
    """The families in Prometheus text, or nothing when the database cannot answer (the rest of
    the scrape still works; /ready reports the database)."""
    try:
        summary = await store.read(partial(reconcile_runs.summary, now=now))
    except (StoreError, apsw.Error) as exc:
        log.debug("reconcile metrics left out of this scrape: %s", exc)
        return b""
    registry = CollectorRegistry()
    registry.register(RunsCollector(summary))
    return generate_latest(registry)
