"""Prometheus metrics for one server (its own registry, so several servers can live in one test process).

Under `sluice serve` every process counts in its own files of a shared directory (prometheus_client's
multiprocess mode, switched on by `PROMETHEUS_MULTIPROC_DIR`, which the supervisor sets for its
children), and `/metrics` on any ingest process adds them all up: counters and histograms summed
over every process that ever ran (a restarted process's counts are kept), the log head the highest
any process saw, lag the most recent value the delivery process published.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self._children: dict[tuple[int, str], Any] = {}
        self.accepted = Counter(
            "sluice_events_accepted", "Events stored in the log", ["source"], registry=r
        )
        self.duplicates = Counter(
            "sluice_events_duplicate", "Events acknowledged but not stored again (known messageId)",
            ["source"], registry=r,
        )
        self.rejected = Counter(
            "sluice_events_rejected", "Events refused, by reason", ["source", "reason"], registry=r
        )
        self.requests_refused = Counter(
            "sluice_requests_refused", "Whole requests refused (400/401/404/503), by reason",
            ["endpoint", "reason"], registry=r,
        )
        self.latency = Histogram(
            "sluice_request_duration_seconds", "Ingest request latency, including the durable commit",
            ["endpoint"], registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.drip_unknown = Counter(
            "sluice_drip_unknown_events", "Drip webhooks with an event name sluice does not know",
            ["source"], registry=r,
        )
        self.log_head = Gauge("sluice_log_head_seq", "Highest sequence number in the log", registry=r,
                              multiprocess_mode="max")
        self.lag = Gauge(
            "sluice_delivery_lag_events", "Events in the log not yet delivered, per destination",
            ["source", "destination"], registry=r, multiprocess_mode="mostrecent",
        )
        self.delivered = Counter(
            "sluice_events_delivered", "Events delivered, per destination", ["source", "destination"],
            registry=r,
        )
        self.delivery_errors = Counter(
            "sluice_delivery_errors", "Failed delivery attempts, per destination and kind",
            ["source", "destination", "kind"], registry=r,
        )
        self.dead_letters = Counter(
            "sluice_dead_letters", "Events moved to dead letters", ["source", "destination"], registry=r
        )

    # The per-request children, looked up once: labels() costs microseconds on every call.
    def accepted_for(self, source: str) -> Any:
        return self._child(self.accepted, source)

    def duplicates_for(self, source: str) -> Any:
        return self._child(self.duplicates, source)

    def latency_for(self, endpoint: str) -> Any:
        return self._child(self.latency, endpoint)

    def _child(self, metric: Any, label: str) -> Any:
        key = (id(metric), label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(label)
        return child

    def render(self) -> bytes:
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not shared:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        everyone = CollectorRegistry()
        MultiProcessCollector(everyone, shared)
        return generate_latest(everyone)
