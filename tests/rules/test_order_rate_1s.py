import pytest
from evtools import T0, S, by_rule, cancel, order, run


def burst(n, start, account="A1", venue="SSE", spacing=1000, kind=order, prefix="o"):
    return [kind(start + i * spacing, account, venue, oid=f"{prefix}{i}") for i in range(n)]


def test_300_in_one_calendar_second_alerts_299_does_not():
    evs = burst(300, T0 + S, "HIT") + burst(299, T0 + S, "MISS", prefix="m")
    alerts, _ = run(evs)
    a = by_rule(alerts, "order_rate_1s")
    assert [x["subject"] for x in a] == [{"venue": "SSE", "account": "HIT"}]
    assert a[0]["value"] == 300 and a[0]["threshold"] == 300
    assert a[0]["window_start"] == T0 + S and a[0]["window_end"] == T0 + 2 * S
    assert a[0]["evidence"]["seconds_at_threshold"] == 1
    assert a[0]["evidence"]["sample_order_ids"] == ["o0", "o1", "o2", "o3", "o4"]


def test_cancels_count_trades_and_index_do_not():
    evs = burst(150, T0 + S) + burst(149, T0 + S, kind=cancel, prefix="c")
    evs += [order(T0 + S + 5, "A1", type_="trade", side="S") for _ in range(50)]
    evs += [{"ts": T0 + S + 7, "venue": "SSE", "type": "index", "symbol": "000001", "price": 2886.59}]
    alerts, _ = run(evs)
    assert by_rule(alerts, "order_rate_1s") == []
    alerts, _ = run(evs + [cancel(T0 + S + 10**8, "A1", oid="last")])
    assert by_rule(alerts, "order_rate_1s")[0]["value"] == 300


def test_straddling_a_second_boundary_calendar_vs_sliding():
    evs = burst(150, T0 + 2 * S - S // 2, spacing=1000) + burst(150, T0 + 2 * S, prefix="b", spacing=1000)
    cal, _ = run(evs)
    assert by_rule(cal, "order_rate_1s") == []
    sl, _ = run(evs, order_rate_1s={"mode": "sliding"})
    a = by_rule(sl, "order_rate_1s")
    assert len(a) == 1 and a[0]["value"] == 300
    assert a[0]["evidence"]["mode"] == "sliding"
    assert a[0]["window_start"] == T0 + 2 * S - S // 2


def test_same_account_string_on_two_venues_is_counted_apart():
    evs = burst(200, T0 + S, "DUP", "SSE") + burst(200, T0 + S, "DUP", "SZSE", prefix="z")
    alerts, _ = run(evs)
    assert by_rule(alerts, "order_rate_1s") == []


def test_one_alert_per_account_and_day_with_peak_and_seconds():
    evs = burst(300, T0 + S) + burst(350, T0 + 10 * S, prefix="p") + burst(310, T0 + 20 * S, prefix="q")
    alerts, _ = run(evs)
    a = by_rule(alerts, "order_rate_1s")
    assert len(a) == 1
    ev = a[0]["evidence"]
    assert a[0]["value"] == 350 and ev["peak_count"] == 350 and ev["peak_second"] == T0 + 10 * S
    assert ev["seconds_at_threshold"] == 3
    assert ev["per_second"] == [[T0 + S, 300], [T0 + 10 * S, 350], [T0 + 20 * S, 310]]
    assert a[0]["status"] == "final"


def test_raised_then_final_same_id():
    evs = burst(300, T0 + S) + burst(320, T0 + 5 * S, prefix="x")
    _, eng = run(evs, chunk=50)
    recs = [r for r in eng.records if r["rule"] == "order_rate_1s"]
    assert [r["status"] for r in recs] == ["raised", "final"]
    assert recs[0]["alert_id"] == recs[1]["alert_id"]
    assert recs[1]["value"] == 320


def test_counts_reset_each_trading_day():
    # 09:30 on two consecutive days: one alert per day, different ids
    day = 86_400 * S
    alerts, _ = run(burst(300, T0 + S) + burst(300, T0 + day + S, prefix="d2"))
    a = by_rule(alerts, "order_rate_1s")
    assert [x["trading_day"] for x in a] == ["2024-02-19", "2024-02-20"]
    assert a[0]["alert_id"] != a[1]["alert_id"]


def test_threshold_override():
    alerts, _ = run(burst(100, T0 + S), order_rate_1s={"threshold": 100})
    assert by_rule(alerts, "order_rate_1s")[0]["threshold"] == 100


def test_peak_context_lists_the_seconds_around_the_peak_whatever_the_batches():
    evs = burst(300, T0 + S)  # first qualifying second
    evs += [order(T0 + i * S + 5, "A1", oid=f"x{i}") for i in (2, 3, 20, 45, 49)]  # below the threshold
    evs += burst(350, T0 + 50 * S, prefix="p")  # the peak
    evs += [order(T0 + i * S + 5, "A1", oid=f"y{i}") for i in (51, 60, 80, 81)]  # 81 s: more than 30 s after
    evs += [order(T0 + 90 * S, "B1", oid="other")]
    want = None
    for chunk in (None, 1, 7, 333):
        alerts, _ = run(evs, chunk=chunk)
        a = by_rule(alerts, "order_rate_1s")[0]
        ctx = a["evidence"]["peak_context"]
        if want is None:
            want = ctx
            assert ctx["seconds"] == 30
            assert ctx["per_second"] == [[T0 + i * S, n] for i, n in ((20, 1), (45, 1), (49, 1), (50, 350),
                                                                      (51, 1), (60, 1), (80, 1))]
        assert ctx == want, chunk
    sl, _ = run(evs, order_rate_1s={"mode": "sliding"})
    assert "peak_context" not in by_rule(sl, "order_rate_1s")[0]["evidence"]


def test_samples_are_the_seconds_first_events_also_when_a_low_threshold_is_reached_early():
    """A threshold below the number of samples is reached before the second is complete: the samples are
    still the second's first events, whatever the batches (live segments are small)."""
    evs = [order(T0 + S + i * 1000, "A1", oid=f"o{i}") for i in range(8)]
    for chunk in (None, 1, 2, 3):
        alerts, _ = run(evs, chunk=chunk, order_rate_1s={"threshold": 3})
        assert by_rule(alerts, "order_rate_1s")[0]["evidence"]["sample_order_ids"] == [f"o{i}" for i in range(5)], \
            chunk


def test_accounts_alerted_on_an_earlier_day_are_not_taken_for_alerted_today():
    """Regression: a per-key flag cache keyed on the number of alerts kept yesterday's flags (same count)."""
    D = 86400 * S
    evs = [order(T0 - S, "A2")]  # A2 first: the smaller account key (no rebuild for a larger key)
    evs += [order(T0 + i * 1000, "A1") for i in range(300)]
    evs += [order(T0 + D + i * 1000, "A2") for i in range(300)]
    evs += [order(T0 + D + 5 * S, "A1"), order(T0 + D + 7 * S, "A1"), order(T0 + D + 9 * S, "A2")]
    alerts, _ = run(evs, chunk=50)
    assert [(a["subject"]["account"], a["trading_day"]) for a in alerts] == [("A1", "2024-02-19"),
                                                                            ("A2", "2024-02-20")]


def test_sorting_only_the_accounts_that_can_matter_gives_the_same_alerts(tmp_path, monkeypatch):
    """Large segments sort only the rows of accounts with the threshold of messages in the segment or an alert
    today (OrderRate1s._may_matter); every row, as before, must give the same alerts."""
    from evtools import replay_rule_alerts

    import surveil.rules.order_rate_1s as mod
    from surveil.events.batch import _svev
    from surveil.rules.order_rate_1s import OrderRate1s
    from surveil.sim import simulate

    assert _svev is not None, "surveil.events._svev is not built"
    day = simulate(tmp_path / "d.svb", events=150_000, accounts=2_000, seed=7)
    got = {}
    for way in ("compiled", "filtered", "every row"):  # _svev.second_counts, and the numpy code with and without
        monkeypatch.setattr(mod, "_svev", _svev if way == "compiled" else None)  # the filter
        if way == "every row":
            monkeypatch.setattr(OrderRate1s, "_may_matter", lambda self, c, k: c)
        for thr in (300, 3):
            got[way, thr] = replay_rule_alerts(day, "order_rate_1s", thr)
    for thr, least in ((300, 1), (3, 16)):
        assert got["compiled", thr] == got["filtered", thr] == got["every row", thr]
        assert len(got["filtered", thr]) >= least


def test_a_large_segment_without_any_account_that_matters_after_an_alert():
    """After an alert, a large segment in which no account can matter (the alerted one is quiet, nobody is near
    the threshold) leaves nothing to sort: no error, and the alert still ends final (found in review: an
    IndexError that would have stopped a worker for good)."""
    from evtools import batch_of

    from surveil.engine import Engine, load_config

    evs = [order(T0 + i * 1000, "H") for i in range(300)]
    evs += [order(T0 + 5 * S + i * 1000, f"L{i % 1000}") for i in range(5000)]  # 5 per account, 5 s later
    b, reg = batch_of(evs)
    eng = Engine(load_config(), registry=reg, rules=["order_rate_1s"])
    eng.process(b.take(slice(0, 300)))
    eng.process(b.take(slice(300, None)))
    eng.close()
    assert [(r["status"], r["subject"]["account"]) for r in eng.drain()] == [("raised", "H"), ("final", "H")]


@pytest.mark.parametrize("seed", range(2))
def test_alternating_busy_and_quiet_segments_give_the_same_alerts_as_sorting_every_row(seed, monkeypatch):
    """Segments of a few heavy accounts alternate with segments of many light ones, cut at random sizes around
    the large-segment limit, across days: the compiled counting and the filtered sort give the records of
    sorting every row."""
    import random

    from evtools import batch_of, records_in_cuts

    from surveil.rules.order_rate_1s import OrderRate1s

    rnd = random.Random(seed)
    evs, t = [], T0
    for blk in range(9):
        heavy = blk % 3 == 0
        for i in range(rnd.choice([300, 5000, 6000])):
            t += rnd.choice([0, 1000, 10**6]) if heavy else rnd.choice([10**5, 10**6])
            acc = rnd.choice(["H1", "H2"]) if heavy else f"L{rnd.randrange(900)}"
            evs.append((order if rnd.random() < 0.7 else cancel)(t, acc, oid=f"{blk}-{i}"))
        t += rnd.choice([0, 2 * S, 86400 * S // 3])
    import surveil.rules.order_rate_1s as mod
    from surveil.events.batch import _svev

    b, reg = batch_of(evs)
    filtered = OrderRate1s._may_matter
    for thr in (4, 300):
        got = []
        for way in ("compiled", "filtered", "every row"):  # _svev.second_counts; the numpy code's two ways
            monkeypatch.setattr(mod, "_svev", _svev if way == "compiled" else None)
            monkeypatch.setattr(OrderRate1s, "_may_matter", filtered if way == "filtered" else (lambda self, c, k: c))
            got.append(records_in_cuts(b, reg, "order_rate_1s", {"threshold": thr}, [4096, 5000, 7000, 200], seed))
        assert got[0] == got[1] == got[2] and got[0]
