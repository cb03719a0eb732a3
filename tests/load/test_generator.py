"""The load generator's pieces, without a broker: shifted frames, the partitioning, the replay it is checked against."""

import numpy as np
import pytest

from load_tests.generator import CHUNK_EVENTS, Day, shift_frame
from load_tests.runs import _shifted_file, canonical
from surveil.events import binary
from surveil.events.batch import Registry
from surveil.events.errors import FrameChecksumError
from surveil.events.io import read_events
from surveil.events.schema import NS_PER_DAY
from surveil.feed import partition_for
from surveil.replay import replay
from surveil.sim import simulate
from surveil.stream.settings import Settings


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("gen") / "day.svb", events=60_000, accounts=800, seed=7)


def _decode(frame):
    b, _ = binary.decode_frame_at(frame, 0, Registry(), "t", 0, [])
    return b


def test_a_shifted_frame_is_the_same_events_k_days_later_with_valid_checksums(day):
    d = Day(day.events_path, Settings(), chunk_events=5_000)
    frame = d.chunks[3][0][1]
    moved = shift_frame(frame, 2 * NS_PER_DAY)
    a, b = _decode(frame), _decode(moved)
    assert len(a) == len(b) > 0
    assert np.array_equal(b.ts, a.ts + 2 * NS_PER_DAY)
    for col in ("price", "qty", "seq", "venue", "etype", "side", "flags", "account", "symbol"):
        assert np.array_equal(getattr(a, col), getattr(b, col)), col
    damaged = bytearray(moved)
    damaged[-10] ^= 0xFF
    with pytest.raises(FrameChecksumError):  # the checksums were computed anew, and are checked
        binary.decode_frame_at(bytes(damaged), 0, Registry(), "t", 0, [])


def test_the_day_is_cut_into_chunks_in_event_time_and_frames_by_the_feeds_partition(day):
    s = Settings(feed_partitions=3)
    d = Day(day.events_path, s, chunk_events=5_000, frame_size=700)
    assert sum(int(n) for n in d.chunk_events) == d.events == day.n_events
    targets = d.targets_for(s)
    last = -1
    for i, chunk in enumerate(d.chunks):
        lo = []
        for g, value, n, _key in chunk:
            b = _decode(value)
            assert len(b) == n <= 700
            lo.append(int(b.ts.min()))
            last = max(last, int(b.ts.max()))
            topic, p = targets[g]
            venue = ("SSE", "SZSE", "BSE")[s.feed_topics.index(topic)]
            assert set(b.venue.tolist()) == {("SSE", "SZSE", "BSE").index(venue)}
        assert min(lo) == d.chunk_first_ts[i]
        if i + 1 < d.n_chunks:
            assert last <= d.chunk_first_ts[i + 1] <= d.marker_after(0, i)
    assert d.marker_after(1, d.n_chunks - 1) == d.chunk_first_ts[0] + 2 * NS_PER_DAY


def test_an_accounts_events_all_go_to_its_partition(day):
    s = Settings(feed_partitions=4)
    d = Day(day.events_path, s, chunk_events=8_000)
    reg = Registry()
    seen = {}
    for chunk in d.chunks:
        for g, value, _n, _key in chunk:
            b, _ = binary.decode_frame_at(value, 0, reg, "t", 0, [])
            for v, a in set(zip(b.venue.tolist(), b.account.tolist())):
                if a >= 0:
                    seen.setdefault((v, a), set()).add(g)
    assert seen and all(len(gs) == 1 for gs in seen.values())
    for (v, a), gs in list(seen.items())[:200]:
        venue, acct = ("SSE", "SZSE", "BSE")[v], reg.accounts.names[a]
        assert gs == {v * 4 + partition_for(f"{venue}:{acct}".encode(), 4)} == {d.partition_of(venue, acct)}


def test_a_days_alerts_depend_on_that_days_events_only(day, tmp_path):
    """What load_tests.runs.expected_alerts relies on: replaying each shifted repetition alone gives the
    alerts of replaying them together (as the worker sees them, one after the other)."""
    files = [_shifted_file(day.events_path, k, None, CHUNK_EVENTS, tmp_path / f"r{k}.svb") for k in range(3)]
    together = replay(files, accounts=day.accounts_path).alerts
    alone = [a for f in files for a in replay([f], accounts=day.accounts_path).alerts]
    assert len(together) >= 3 and canonical(together) == canonical(alone)
    days = sorted({a["trading_day"] for a in together})
    assert len(days) == 3  # each repetition is its own trading day


def test_a_partial_last_repetition_is_its_first_chunks(day, tmp_path):
    p = _shifted_file(day.events_path, 1, 2, 5_000, tmp_path / "part.svb")
    got = list(read_events(p, Registry(), []))
    n = sum(len(b) for b in got)
    assert n == 10_000
    first = next(read_events(day.events_path, Registry(), []))
    assert int(got[0].ts[0]) == int(first.ts[0]) + NS_PER_DAY


def test_the_comparison_leaves_out_only_the_market_context():
    from load_tests.runs import compare

    base = {"kind": "alert", "alert_id": "a1", "rule": "sell_burst_1m", "window_start": 1, "subject": {"owner": "O"},
            "trading_day": "2024-02-19", "value": 5, "severity": "high",
            "evidence": {"indexes": [1], "share_of_market": 0.5, "by_account": [1],
                         "by_broker": {"B1": {"value": 2, "evidence": {"indexes": [1], "market_sell_value_fen": 9}}}}}
    lost = {**base, "evidence": {"indexes": [], "share_of_market": None, "by_account": [1],
                                 "by_broker": {"B1": {"value": 2, "evidence": {"indexes": [],
                                                                               "market_sell_value_fen": None}}}}}
    c = compare([lost], [base])
    assert not c["equals_replay"] and c["equals_replay_except_market_context"] and c["market_context_differences"] == 1
    other = {**lost, "value": 6}
    assert not compare([other], [base])["equals_replay_except_market_context"]
    firm = {**lost, "evidence": {**lost["evidence"], "by_broker": {"B1": {"value": 3, "evidence": {}}}}}
    assert not compare([firm], [base])["equals_replay_except_market_context"]
    assert compare([], [base])["missing_alerts"] == 1 and compare([base], [])["extra_alerts"] == 1
