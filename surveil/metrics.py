"""Prometheus metrics of a stream worker.

Labels are bounded (docs/architecture.md §9): venue, type, rule, severity, status, measure, topic, partition,
and for rejects the field at fault. Never an account or owner id. Each labelled child is bound once and
reused, and counts are added per record (a frame of thousands of events), not per event.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from surveil.events.schema import TYPES, VENUES

__all__ = ["WorkerMetrics", "CONTENT_TYPE_LATEST"]

_PROCESSING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, enabled: bool = True):
        self.enabled = enabled  # off (SURVEIL_METRICS=off): nothing counted per record, no gauges sampled
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
        self._partition_labels: set[tuple[str, str]] = set()  # (topic, partition) children of the lag gauges
        self._last_sample = 0.0

    def add_events(self, counts) -> None:
        """``counts``: ``len(VENUES) * len(TYPES)`` numbers (15), index venue * len(TYPES) + type."""
        if not self.enabled:
            return
        k = len(TYPES)
        for i, n in enumerate(counts):
            if n:
                self._events[i // k][i % k].inc(int(n))

    def record(self, topic: str, seconds: float, n: int = 1) -> None:
        """``n`` records of ``topic`` handled in one pass that took ``seconds``."""
        if not self.enabled:
            return
        c = self._records.get(topic)
        if c is None:
            c = self._records[topic] = self.records.labels(topic)
        c.inc(n)  # type: ignore[attr-defined]
        self.processing.observe(seconds)

    def sample(self, worker: Any, min_interval: float = 0.0) -> bool:
        """Set the gauges from the worker's state: state sizes, assigned partitions, event-time lag and
        consumer lag per partition. Cheap (one pass over the assigned partitions, no Kafka request): called
        by the worker's periodic status step and by each scrape of ``/metrics``, never per record.

        Partitions no longer assigned lose their lag series (a revoked partition is another worker's).
        Skipped (returns False) when the last sample is more recent than ``min_interval`` seconds."""
        mono = time.monotonic()
        if not self.enabled:
            return False
        if min_interval and mono - self._last_sample < min_interval:
            return False
        self._last_sample = mono
        now = time.time_ns()
        accounts = owners = feed = owner = 0
        seen: set[tuple[str, str]] = set()
        consumer = getattr(worker, "consumer", None)
        for tp, st in list(worker.states.items()):
            labels = (tp.topic, str(tp.partition))
            seen.add(labels)
            if hasattr(st, "watermark"):  # an owner stage (surveil.stream.owner.KeyedState)
                owner += 1
                owners += len(st.reg.owners)
            else:
                feed += 1
                accounts += len(st.reg.accounts)
            max_seen = getattr(st.engine, "max_seen", None)
            if max_seen is not None:
                self.event_lag.labels(*labels).set((now - max_seen) / 1e9)
            high = None
            if consumer is not None:
                try:
                    high = consumer.highwater(tp)
                except Exception:  # noqa: BLE001 - a partition being revoked meanwhile
                    high = None
            if high is not None:
                self.consumer_lag.labels(*labels).set(max(0, high - (st.offset + 1)))
        for labels in self._partition_labels - seen:
            for g in (self.event_lag, self.consumer_lag):
                try:
                    g.remove(*labels)
                except KeyError:
                    pass
        self._partition_labels = seen
        self.accounts.set(accounts)
        self.owners.set(owners)
        self.partitions.labels("partition").set(feed)
        self.partitions.labels("owner").set(owner)
        return True

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
