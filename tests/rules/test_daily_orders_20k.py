import pytest
from evtools import T0, S, by_rule, cancel, order, run


def spread(n, account, venue="SSE"):
    # n messages spread over 4 hours, never near 300/s
    step = (4 * 3600 * S) // n
    return [(order if i % 3 else cancel)(T0 + i * step, account, venue, oid=i) for i in range(n)]


def test_20000_alerts_19999_does_not():
    alerts, _ = run(spread(20_000, "HIT") + spread(19_999, "MISS"))
    a = by_rule(alerts, "daily_orders_20k")
    assert [x["subject"]["account"] for x in a] == ["HIT"]
    ev = a[0]["evidence"]
    assert a[0]["value"] == 20_000 and ev["day_count"] == 20_000
    assert ev["orders"] + ev["cancels"] == 20_000
    assert ev["threshold_message_order_id"] == 19_999
    assert by_rule(alerts, "order_rate_1s") == []


def test_trades_do_not_count_and_venues_apart():
    evs = spread(19_999, "X", "SSE") + [order(T0 + 5 * 3600 * S, "X", type_="trade", side="S")]
    evs += spread(10_000, "X", "SZSE")
    alerts, _ = run(evs)
    assert by_rule(alerts, "daily_orders_20k") == []


def test_final_value_is_the_days_count():
    alerts, _ = run(spread(20_500, "HIT"), chunk=3000)
    a = by_rule(alerts, "daily_orders_20k")
    assert a[0]["value"] == 20_500


def test_counting_large_segments_per_account_gives_the_same_alerts(tmp_path, monkeypatch):
    """Large segments are counted per account (bincount) instead of per event: the same alerts, with the same
    threshold-reaching message, at the default and a probe threshold."""
    from evtools import replay_rule_alerts

    import surveil.rules.daily_orders_20k as mod
    from surveil.events.batch import _svev
    from surveil.rules.daily_orders_20k import DailyOrders20k
    from surveil.sim import simulate

    assert _svev is not None, "surveil.events._svev is not built"
    day = simulate(tmp_path / "d.svb", events=150_000, accounts=2_000, seed=8)
    got = {}
    for way in ("compiled", "bulk", "per event"):  # _svev.count_day, and the numpy code's two paths
        monkeypatch.setattr(mod, "_svev", _svev if way == "compiled" else None)
        monkeypatch.setattr(DailyOrders20k, "BULK_MIN", 4096 if way == "bulk" else 10**12)
        for thr in (20_000, 60):
            got[way, thr] = replay_rule_alerts(day, "daily_orders_20k", thr)
    for thr, least in ((20_000, 1), (60, 50)):
        assert got["compiled", thr] == got["bulk", thr] == got["per event", thr] and len(got["bulk", thr]) >= least


@pytest.mark.parametrize("seed", range(3))
def test_the_compiled_counting_emits_the_records_of_the_numpy_code_in_order(seed, monkeypatch):
    """Many accounts reach a low threshold in the same segments, over two days, cut at random sizes: the
    compiled counting (_svev.count_day) emits the same records, in the same order, as both numpy paths."""
    import random

    from evtools import batch_of, records_in_cuts

    import surveil.rules.daily_orders_20k as mod
    from surveil.events.batch import _svev
    from surveil.rules.daily_orders_20k import DailyOrders20k

    rnd = random.Random(seed)
    evs, t = [], T0
    for i in range(12_000):
        t += rnd.choice([0, 1000, 10**6])
        if i == 6_000:
            t += 86400 * S  # the next trading day: counts start again
        evs.append((order if rnd.random() < 0.6 else cancel)(t, f"A{rnd.randrange(300)}", oid=str(i)))
    b, reg = batch_of(evs)
    got = []
    for way in ("compiled", "bulk", "per event"):
        monkeypatch.setattr(mod, "_svev", _svev if way == "compiled" else None)
        monkeypatch.setattr(DailyOrders20k, "BULK_MIN", 64 if way == "bulk" else 10**12)
        got.append(records_in_cuts(b, reg, "daily_orders_20k", {"threshold": 15}, [1, 50, 700, 3000], seed))
    assert got[0] == got[1] == got[2] and len(got[0]) > 300
