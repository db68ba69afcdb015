"""What the public daemon counts and times, for GET /metrics (Prometheus).

Each app gets its own CollectorRegistry (no process-global state), so two apps in one process,
as in the tests, count separately. Label values come from short fixed sets, never from what a
client sent, so a hostile client cannot grow the series without bound.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram

from ..billing import MOVED_MONEY, Fulfilment, Outcome
from ..payments.stripe_api import HANDLED_EVENT_TYPES

PREFIX: Final = "hero_onboarding_"
# Webhook types we act on keep their own label; any other verified type is counted as "other".
KNOWN_EVENT_TYPES: Final = frozenset(HANDLED_EVENT_TYPES)
# Outcomes that gave money back or took it: counted with their amount, per path.
REVERSALS: Final = MOVED_MONEY - {Outcome.CREDITED}
UNVERIFIED: Final = "unverified"
# Why a webhook delivery was refused before (or at) verification: the label of
# webhook_unverified_total. Fixed here so a client cannot invent series.
UNVERIFIED_REASONS: Final = ("signature", "too_large", "unreadable")
# Why a request body was refused unread, whatever the route: body_refused_total's label.
BODY_REFUSALS: Final = ("encoding", "too_large")
# Request latencies: a page is a few ms, a checkout waits on the provider for up to seconds.
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    checkouts_created: Counter
    checkout_failures: Counter
    webhooks: Counter
    signature_failures: Counter
    webhook_unverified: Counter
    bodies_refused: Counter
    credits_applied: Counter
    credited_minor_units: Counter
    duplicates_ignored: Counter
    reversals: Counter
    reversed_minor_units: Counter
    unmatched: Counter
    request_seconds: Histogram
    webhook_seconds: Histogram
    provider_seconds: Histogram
    # Each (metric, labels) child once looked up: labels() takes a lock and builds a key on
    # every call, several times per webhook. Label values come from fixed sets (module
    # docstring), so this holds at most as many entries as the series themselves.
    _children: dict[tuple[Any, tuple[str, ...]], Any] = field(
        default_factory=dict, repr=False, compare=False
    )

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, looked up once."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def fulfilled(self, source: str, result: Fulfilment, currency: str | None) -> None:
        """Count what one call to billing.fulfil did, by the path that made it."""
        if result.outcome is Outcome.CREDITED:
            self.child(self.credits_applied, source, currency or "").inc()
            self.child(self.credited_minor_units, source, currency or "").inc(result.amount)
        elif result.outcome is Outcome.DUPLICATE:
            self.child(self.duplicates_ignored, source).inc()
        elif result.outcome in REVERSALS:
            self.reversals.labels(source, result.outcome.value).inc()
            self.reversed_minor_units.labels(source, result.outcome.value, currency or "").inc(
                abs(result.amount)
            )
        elif result.outcome is Outcome.UNMATCHED:
            reason = result.reason.value if result.reason else "other"
            self.unmatched.labels(source, reason).inc()

    @contextlib.contextmanager
    def provider_call(self, operation: str) -> Iterator[None]:
        """Time one call to the payment provider; it counts as an error if it raises."""
        started, result = time.perf_counter(), "error"
        try:
            yield
            result = "ok"
        finally:
            self.provider_seconds.labels(operation, result).observe(time.perf_counter() - started)

    def observe_request(self, route: str, method: str, seconds: float) -> None:
        """One request's latency (what metrics_routes.timing_middleware records for pages)."""
        self.child(self.request_seconds, route, method).observe(seconds)

    def webhook(self, event_type: str, outcome: str) -> None:
        label = (
            event_type if event_type in KNOWN_EVENT_TYPES or event_type == UNVERIFIED else "other"
        )
        self.child(self.webhooks, label, outcome).inc()


def new_metrics() -> Metrics:
    registry = CollectorRegistry()

    def counter(name: str, doc: str, *labels: str) -> Counter:
        return Counter(PREFIX + name, doc, labels, registry=registry)

    def histogram(name: str, doc: str, *labels: str) -> Histogram:
        return Histogram(PREFIX + name, doc, labels, buckets=LATENCY_BUCKETS, registry=registry)

    metrics = Metrics(
        registry=registry,
        checkouts_created=counter(
            "checkouts_created", "Hosted checkouts opened for a buyer", "provider"
        ),
        checkout_failures=counter(
            "checkout_failures", "Checkouts the provider could not open", "provider"
        ),
        webhooks=counter(
            "webhooks", "Webhook deliveries by event type and outcome", "type", "outcome"
        ),
        signature_failures=counter(
            "webhook_signature_failures", "Webhook deliveries refused for their signature"
        ),
        webhook_unverified=counter(
            "webhook_unverified",
            "Webhook deliveries refused unverified, by why (each counted; few are stored)",
            "reason",
        ),
        bodies_refused=counter(
            "request_bodies_refused",
            "Request bodies refused without reading them: compressed, or over the limit",
            "reason",
        ),
        credits_applied=counter(
            "credits_applied", "Payments credited to a balance", "source", "currency"
        ),
        credited_minor_units=counter(
            "credited_minor_units", "Minor units credited to balances", "source", "currency"
        ),
        duplicates_ignored=counter(
            "duplicates_ignored", "Reports of a payment that was already credited", "source"
        ),
        reversals=counter(
            "reversals",
            "Refunds, refund failures, disputes and dispute wins that moved a balance",
            "source",
            "outcome",
        ),
        reversed_minor_units=counter(
            "reversed_minor_units",
            "Minor units those reversals moved (taken back or given back)",
            "source",
            "outcome",
            "currency",
        ),
        unmatched=counter(
            "unmatched",
            "Reports about money that were not applied, by why (someone must look)",
            "source",
            "reason",
        ),
        request_seconds=histogram(
            "http_request_duration_seconds", "Time to answer a request", "route", "method"
        ),
        webhook_seconds=histogram(
            "webhook_duration_seconds", "Time to verify, fulfil and record one webhook"
        ),
        provider_seconds=histogram(
            "provider_request_duration_seconds",
            "Time the payment provider took to answer",
            "operation",
            "result",
        ),
    )
    # Every reason shows from the start (at 0), so a rate() over it has a baseline.
    for reason in UNVERIFIED_REASONS:
        metrics.webhook_unverified.labels(reason)
    for reason in BODY_REFUSALS:
        metrics.bodies_refused.labels(reason)
    return metrics
