"""Prometheus metrics of a stream worker.

Labels are bounded (architecture.md §9): venue, type, rule, severity, status, measure, topic, partition,
and for rejects the field at fault. Never an account or owner id. Each labelled child is bound once and
reused, and counts are added per record (a frame of thousands of events), not per event.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from surveil.events.schema import TYPES, VENUES

__all__ = ["WorkerMetrics", "CONTENT_TYPE_LATEST"]

_PROCESSING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry or CollectorRegistry()
        self.events = Counter("surveil_events", "Events processed, by venue and type", ["venue", "type"], registry=r)
        self.rejects = Counter("surveil_rejects", "Rejected records or events, by the field at fault", ["reason"],
                               registry=r)
        self.alerts = Counter("surveil_alerts", "Alert states published", ["rule", "severity", "status"], registry=r)
        self.recommendations = Counter("surveil_recommendations", "Recommendations published", ["measure"],
                                       registry=r)
        self.records = Counter("surveil_records", "Kafka records handled (frames, events, progress markers)",
                               ["topic"], registry=r)
        self.processing = Histogram("surveil_processing_seconds",
                                    "Time to handle and publish the records of one partition from one poll",
                                    buckets=_PROCESSING_BUCKETS, registry=r)
        self.event_lag = Gauge("surveil_event_time_lag_seconds",
                               "Wall clock minus the latest event time processed", ["topic", "partition"], registry=r)
        self.consumer_lag = Gauge("surveil_consumer_lag_records", "Records in the partition not read yet",
                                  ["topic", "partition"], registry=r)
        self.accounts = Gauge("surveil_state_accounts", "Accounts in this worker's detection state", registry=r)
        self.owners = Gauge("surveil_state_owners", "Owners in this worker's owner stages", registry=r)
        self.partitions = Gauge("surveil_assigned_partitions", "Partitions assigned to this worker", ["stage"],
                                registry=r)
        self.checkpoints = Counter("surveil_checkpoints", "Checkpoints written", registry=r)
        self.rewinds = Counter("surveil_rewinds", "Returns to the last checkpoint after undelivered outputs",
                               registry=r)
        self._events = [[self.events.labels(v, t) for t in TYPES] for v in VENUES]
        self._records: dict[str, object] = {}

    def add_events(self, counts) -> None:
        """``counts``: 12 numbers, index venue * 4 + type."""
        for i, n in enumerate(counts):
            if n:
                self._events[i // 4][i % 4].inc(int(n))

    def record(self, topic: str, seconds: float, n: int = 1) -> None:
        """``n`` records of ``topic`` handled in one pass that took ``seconds``."""
        c = self._records.get(topic)
        if c is None:
            c = self._records[topic] = self.records.labels(topic)
        c.inc(n)  # type: ignore[attr-defined]
        self.processing.observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
