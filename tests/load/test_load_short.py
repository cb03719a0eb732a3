"""The short versions of the load tests (load_tests/): a worker process on a real Kafka under a soak phase
(0.7 x its measured capacity), an overload phase (2 x) and a recovery phase (0.1 x); the figures go to the
results JSON and the plots, and only what must hold whatever the machine's speed is asserted: the worker
never exits, the lag grew under the overload and came back down under the low rate, nothing was lost
(final alerts equal replay's), latencies and memory were measured, the plots were drawn.

Bounded: about 60-90 s on a 2-core machine (capacity ~15 s, worker start ~5 s, 39 s of feed, drain and
replay). The long runs are ``python -m load_tests soak --minutes 20`` and ``python -m load_tests overload``."""

import asyncio
import json
from pathlib import Path

import pytest

from load_tests import suite

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(kafka_broker, tmp_path_factory):
    out = tmp_path_factory.mktemp("load")
    res = asyncio.run(asyncio.wait_for(suite.short(kafka_broker.bootstrap, out, kafka_broker.pid), 400))
    return res, out


def _phase(res, name):
    return next(p for p in res["phase_results"] if p["name"] == name)


def test_capacity_is_measured_with_a_bare_consumer_baseline_and_equals_replay(run):
    res, out = run
    cap = json.loads((out / "capacity.json").read_text())
    assert cap == res["capacity"]
    assert cap["process_eps_sustained"] > 0 and cap["bare_eps"] > 0
    vs = cap["process_vs_replay"]  # every alert, with its values (and byte-identical: below)
    assert vs["missing_alerts"] == vs["extra_alerts"] == 0, vs["differences_from_replay"]
    assert vs["equals_replay"], vs["differences_from_replay"]
    assert cap["process_final_alerts"] == cap["replay_alerts"] > 0
    assert cap["process"]["exit_code"] == 0
    assert res["capacity_eps"] == cap["process_eps_sustained"]
    assert [p["target_eps"] for p in res["phase_results"]] == pytest.approx(
        [0.7 * res["capacity_eps"], 2 * res["capacity_eps"], 0.1 * res["capacity_eps"]])


def test_the_worker_never_exits_and_stops_cleanly(run):
    res, _ = run
    samples = [x for x in res["samples"] if "error" not in x]
    assert len(samples) >= 30  # one a second over the run
    assert all(x["worker_alive"] for x in samples) and res["worker_alive_throughout"]
    assert res["worker_exit_code_after_sigterm"] == 0


def test_overload_grows_the_lag_and_it_comes_back_under_the_low_rate(run):
    res, _ = run
    ov = _phase(res, "overload")
    rec = res["recovery"]
    assert ov["achieved_eps"] > 0
    assert ov["lag_events_end"] > ov["lag_events_start"]  # the input outran the worker
    assert ov["lag_events_max"] > rec["threshold_events"]
    assert rec["recovered"], rec  # back to about 0 while the low rate was still on
    assert res["drained"] and res["samples"][-1]["lag_events"] == 0 and res["samples"][-1]["lag_records"] == 0


def test_nothing_is_lost_every_final_alert_of_replay_with_its_values(run):
    """Every alert replay gives, and no other, with the same value, window, accounts and evidence (market context
    included: a day's market figures stay until the owner stage has finished that day)."""
    res, _ = run
    assert res["sent"]["days"] >= 2 and res["sent"]["events"] > 0
    assert res["replay_alerts"] > 0 and res["final_alerts"] == res["replay_alerts"]
    assert res["missing_alerts"] == 0 and res["extra_alerts"] == 0
    assert res["equals_replay"], res["differences_from_replay"]


def test_final_alerts_are_byte_identical_to_replay(run):
    res, _ = run
    assert res["equals_replay"], (res["market_context_differences"], res["market_context_differences_days"])


def test_alert_latency_lag_and_memory_are_measured_and_plotted(run):
    res, out = run
    lat = res["latency"]
    assert lat["unmatched"] == 0 and lat["account"]["n"] > 0 and lat["owner"]["n"] > 0
    assert 0 <= lat["account"]["min_ms"] <= lat["account"]["p50_ms"] <= lat["account"]["p99_ms"]
    # both ends are the broker's clock (LogAppendTime = 1)
    assert res["sent"]["timestamp_types"] == [1] and lat["alert_timestamp_types"] == [1]
    samples = [x for x in res["samples"] if "error" not in x]
    assert all(x["worker_rss_mib"] and x["worker_rss_mib"] > 20 for x in samples)
    assert max(x["lag_events"] for x in samples) == res["lag_events_max"] > 0
    assert sorted(Path(p).name for p in res["plots"]) == ["short-lag.png", "short-memory.png"]
    for p in res["plots"]:
        data = Path(p).read_bytes()
        assert data[:8] == PNG and len(data) > 10_000
    saved = json.loads((out / "short.json").read_text())
    assert saved["equals_replay"] == res["equals_replay"] and saved["plots"] == res["plots"]
