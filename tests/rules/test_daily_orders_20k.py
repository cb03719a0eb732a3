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

    from surveil.rules.daily_orders_20k import DailyOrders20k
    from surveil.sim import simulate

    day = simulate(tmp_path / "d.svb", events=150_000, accounts=2_000, seed=8)
    got = {}
    for bulk in (True, False):
        monkeypatch.setattr(DailyOrders20k, "BULK_MIN", 4096 if bulk else 10**12)
        for thr in (20_000, 60):
            got[bulk, thr] = replay_rule_alerts(day, "daily_orders_20k", thr)
    assert got[True, 20_000] == got[False, 20_000] and len(got[True, 20_000]) >= 1
    assert got[True, 60] == got[False, 60] and len(got[True, 60]) > 50
