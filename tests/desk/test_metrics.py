"""Worker metrics, unit level: real partition and owner states, no broker. Gauges come from the worker's
state (``WorkerMetrics.sample``), counters from what the worker publishes; labels stay bounded."""

import time
from types import SimpleNamespace

import orjson
from aiokafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from surveil.actions import RECO_PARAMS
from surveil.engine import load_config
from surveil.engine.refdata import RefData
from surveil.metrics import WorkerMetrics
from surveil.stream.owner import KeyedState
from surveil.stream.partition import PartitionState

T0 = 1708306200_000_000_000  # 2024-02-19 09:30 Asia/Shanghai


def samples(m: WorkerMetrics) -> dict:
    return {(x.name, tuple(sorted(x.labels.items()))): x.value
            for fam in text_string_to_metric_families(m.exposition().decode()) for x in fam.samples}


class Consumer:
    """The one consumer method ``sample`` uses: the partition's end offset as last fetched (None: unknown)."""

    def __init__(self, high: dict):
        self.high = high

    def highwater(self, tp):
        return self.high.get(tp)


def states():
    params = load_config(None, extra={"recommendations": RECO_PARAMS})
    ref = RefData()
    ref.set("SSE", "A1", "OWNER_X", "B1", None)
    feed = PartitionState("feed.sse:0", params, ref, 2)
    events = [{"ts": T0 + i * 1_000_000, "venue": "SSE", "type": "order", "account": f"A{i % 3}", "broker": "B1",
               "symbol": "600000", "side": "B", "price": 10.0, "qty": 100, "order_id": f"o{i}", "seq": i}
              for i in range(10)]
    out = feed.handle(orjson.dumps(events), 0, "feed.sse", 0)
    feed.handle(orjson.dumps(events[:1]), 1, "feed.sse", 0)
    owner = KeyedState("owner:0", params, ["feed.sse:0"])
    return feed, owner, out


def test_sample_sets_every_gauge_from_the_worker_state():
    feed, owner, out = states()
    tp_feed, tp_owner = TopicPartition("feed.sse", 0), TopicPartition("owner", 1)
    owner.reg.owners.intern("OWNER_X")
    owner.reg.owners.intern("OWNER_Y")
    worker = SimpleNamespace(states={tp_feed: feed, tp_owner: owner}, consumer=Consumer({tp_feed: 12}))
    m = WorkerMetrics()
    m.add_events(out.counts)
    assert m.sample(worker)
    s = samples(m)
    assert s[("surveil_events_total", (("type", "order"), ("venue", "SSE")))] == 10
    assert s[("surveil_state_accounts", ())] == 3  # A0, A1, A2
    assert s[("surveil_state_owners", ())] == 2
    assert s[("surveil_assigned_partitions", (("stage", "partition"),))] == 1
    assert s[("surveil_assigned_partitions", (("stage", "owner"),))] == 1
    # offsets 0 and 1 were processed, the partition ends at 12: 10 records not read yet
    assert s[("surveil_consumer_lag_records", (("partition", "0"), ("topic", "feed.sse")))] == 10
    lag = s[("surveil_event_time_lag_seconds", (("partition", "0"), ("topic", "feed.sse")))]
    expected = (time.time_ns() - (T0 + 9_000_000)) / 1e9
    assert abs(lag - expected) < 60  # wall clock minus the latest event time (a 2024 day: ~years)
    # no highwater known for the owner partition yet: no consumer-lag series rather than a made-up one
    assert ("surveil_consumer_lag_records", (("partition", "1"), ("topic", "owner"))) not in s


def test_revoked_partitions_lose_their_series_and_min_interval_throttles():
    feed, owner, _ = states()
    tp = TopicPartition("feed.sse", 0)
    worker = SimpleNamespace(states={tp: feed}, consumer=Consumer({tp: 2}))
    m = WorkerMetrics()
    assert m.sample(worker)
    assert samples(m)[("surveil_consumer_lag_records", (("partition", "0"), ("topic", "feed.sse")))] == 0
    assert not m.sample(worker, min_interval=60)  # sampled just now
    worker.states.clear()
    assert m.sample(worker)
    s = samples(m)
    assert not [k for k in s if k[0] in ("surveil_consumer_lag_records", "surveil_event_time_lag_seconds")]
    assert s[("surveil_state_accounts", ())] == 0
    assert s[("surveil_assigned_partitions", (("stage", "partition"),))] == 0


def test_events_are_counted_by_venue_and_type_indicative_events_too():
    """The partition stage counts a poll's events by venue and type (5 types since contract version 2)."""
    feed, _, _ = states()
    events = [{"ts": T0 + 10**9 + i, "venue": v, "type": "indicative", "symbol": "600000", "price": 10.0}
              for i, v in enumerate(["SSE", "SZSE", "BSE", "BSE"])]
    events.append({"ts": T0 + 2 * 10**9, "venue": "BSE", "type": "cancel", "account": "A1"})
    out = feed.handle(orjson.dumps(events), 2, "feed.sse", 0)
    assert not out.rejects and len(out.counts) == 15
    m = WorkerMetrics()
    m.add_events(out.counts)
    s = samples(m)
    assert s[("surveil_events_total", (("type", "indicative"), ("venue", "BSE")))] == 2
    assert s[("surveil_events_total", (("type", "indicative"), ("venue", "SZSE")))] == 1
    assert s[("surveil_events_total", (("type", "cancel"), ("venue", "BSE")))] == 1
    assert sum(v for (n, _), v in s.items() if n == "surveil_events_total") == 5


def test_counters_and_histogram_names_and_bounded_labels():
    m = WorkerMetrics()
    m.add_events([1] * 15)
    m.record("feed.sse", 0.003)
    m.record("feed.sse", 0.2)
    m.record("feed.sse", 0.01, n=5)  # five records of one partition handled in one pass
    m.alerts.labels("sell_burst_1m", "critical", "final").inc()
    m.recommendations.labels("restrict_trading").inc()
    m.rejects.labels("venue").inc()
    s = samples(m)
    assert sum(v for (n, _), v in s.items() if n == "surveil_events_total") == 15
    assert {dict(k)["venue"] for (n, k) in s if n == "surveil_events_total"} == {"SSE", "SZSE", "BSE"}
    assert {dict(k)["type"] for (n, k) in s if n == "surveil_events_total"} == {"order", "cancel", "trade", "index",
                                                                                 "indicative"}
    assert s[("surveil_records_total", (("topic", "feed.sse"),))] == 7
    assert s[("surveil_processing_seconds_count", ())] == 3
    assert s[("surveil_processing_seconds_bucket", (("le", "0.005"),))] == 1
    assert s[("surveil_processing_seconds_bucket", (("le", "+Inf"),))] == 3
    assert s[("surveil_alerts_total", (("rule", "sell_burst_1m"), ("severity", "critical"), ("status", "final")))] == 1
    assert s[("surveil_recommendations_total", (("measure", "restrict_trading"),))] == 1
    assert s[("surveil_rejects_total", (("reason", "venue"),))] == 1
    allowed = {"venue", "type", "rule", "severity", "status", "measure", "topic", "partition", "reason", "stage", "le"}
    for fam in text_string_to_metric_families(m.exposition().decode()):
        for x in fam.samples:
            assert set(x.labels) <= allowed, (x.name, x.labels)


def test_surveil_metrics_setting_turns_counting_off_and_a_bad_value_is_a_clear_error():
    import pytest

    from surveil.stream.app import create_app
    from surveil.stream.settings import Settings, SettingsError

    assert Settings.from_env({}).metrics is True
    assert Settings.from_env({"SURVEIL_METRICS": "off"}).metrics is False
    assert Settings.from_env({"SURVEIL_METRICS": "ON"}).metrics is True
    with pytest.raises(SettingsError, match="SURVEIL_METRICS='maybe': expected on or off"):
        Settings.from_env({"SURVEIL_METRICS": "maybe"})
    app = create_app(Settings(metrics=False))
    m = app.surveil_worker.worker.metrics
    assert not m.enabled
    m.add_events([5] * 15)
    m.record("feed.sse", 0.01)
    feed, _, _ = states()
    assert not m.sample(SimpleNamespace(states={TopicPartition("feed.sse", 0): feed}, consumer=None))
    s = samples(m)
    assert sum(v for (n, _), v in s.items() if n == "surveil_events_total") == 0
    assert s[("surveil_processing_seconds_count", ())] == 0 and s[("surveil_state_accounts", ())] == 0
    assert create_app(Settings()).surveil_worker.worker.metrics.enabled
