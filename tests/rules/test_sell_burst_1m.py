from evtools import T0, S, by_rule, run, sell

YI = 100_000_000


def spread_sells(total_yuan, n, start, seconds, account, venue, owner, **kw):
    step = seconds * S // n
    return [sell(start + i * step, account, venue, total_yuan / n, owner=owner, order_id=f"{account}-{i}", **kw)
            for i in range(n)]


def test_999_yi_vs_10_yi_within_60s():
    miss = spread_sells(9.99 * YI, 100, T0, 50, "M1", "SSE", "MISS")
    hit = spread_sells(10 * YI, 100, T0, 50, "H1", "SSE", "HIT")
    alerts, _ = run(miss + hit)
    a = by_rule(alerts, "sell_burst_1m")
    assert [x["subject"] for x in a] == [{"owner": "HIT"}]
    assert a[0]["value"] == 1_000_000_000 * 100 and a[0]["unit"] == "fen"  # integer fen
    assert type(a[0]["value"]) is int and a[0]["threshold"] == 1_000_000_000 * 100


def test_two_venues_each_under_together_over():
    evs = spread_sells(6 * YI, 60, T0, 55, "SH1", "SSE", "SPLIT")
    evs += spread_sells(6 * YI, 60, T0 + 3, 55, "SZ1", "SZSE", "SPLIT")
    alerts, _ = run(evs)
    a = by_rule(alerts, "sell_burst_1m")
    assert len(a) == 1 and a[0]["value"] == 1_200_000_000 * 100
    ev = a[0]["evidence"]
    assert ev["by_venue_fen"] == {"SSE": 600_000_000 * 100, "SZSE": 600_000_000 * 100}
    assert {x["account"] for x in ev["by_account"]} == {"SH1", "SZ1"}
    assert len(ev["sample_order_ids"]) == 5


def test_each_venue_alone_does_not_trigger_without_owner():
    # without a common owner the two accounts are two owners: no alert
    evs = spread_sells(6 * YI, 60, T0, 55, "SH1", "SSE", None) + spread_sells(6 * YI, 60, T0, 55, "SZ1", "SZSE", None)
    alerts, _ = run(evs)
    assert by_rule(alerts, "sell_burst_1m") == []


def test_large_seller_over_ten_minutes_not_flagged():
    alerts, _ = run(spread_sells(30 * YI, 600, T0, 600, "SLOW", "SSE", "SLOW"))
    assert by_rule(alerts, "sell_burst_1m") == []


def test_buys_do_not_count():
    evs = spread_sells(12 * YI, 60, T0, 50, "B1", "SSE", "BUYER")
    for e in evs:
        e["side"] = "B"
    alerts, _ = run(evs)
    assert by_rule(alerts, "sell_burst_1m") == []


def test_overlapping_windows_make_one_alert_a_later_burst_another():
    first = spread_sells(15 * YI, 150, T0, 90, "A", "SSE", "O")  # qualifying windows overlap for ~90 s
    later = spread_sells(11 * YI, 100, T0 + 600 * S, 30, "A", "SSE", "O")
    alerts, _ = run(first + later, chunk=37)
    a = by_rule(alerts, "sell_burst_1m")
    assert len(a) == 2
    assert a[0]["window_start"] == T0 and a[1]["window_start"] == T0 + 600 * S
    assert a[0]["alert_id"] != a[1]["alert_id"]
    assert abs(a[0]["value"] / 100 - 10 * YI) < 0.2 * YI  # peak 60 s of 15 yi over 90 s (value in fen)
    assert a[1]["value"] == 1_100_000_000 * 100


def test_aggressive_only_option():
    evs = spread_sells(12 * YI, 60, T0, 50, "P", "SSE", "PASSIVE", aggressor=False)
    assert len(by_rule(run(evs)[0], "sell_burst_1m")) == 1
    assert by_rule(run(evs, sell_burst_1m={"aggressive_only": True})[0], "sell_burst_1m") == []


def test_index_context_and_market_value_in_evidence():
    evs = spread_sells(12 * YI, 60, T0, 59, "X", "SSE", "O")
    for i in range(61):
        evs.append({"ts": T0 + i * S, "venue": "SSE", "type": "index", "symbol": "000001",
                    "price": round(2886.59 - i * (18.52 / 60), 2)})
    evs += spread_sells(3 * YI, 30, T0, 59, "Y", "SZSE", "OTHER")
    alerts, _ = run(evs)
    a = by_rule(alerts, "sell_burst_1m")[0]
    ev = a["evidence"]
    idx = {x["index"]: x for x in ev["indexes"]}
    assert idx["SSE:000001"]["level_at_start"] == 2886.59
    assert idx["SSE:000001"]["max_drop_pct"] > 0.6
    assert ev["market_sell_value_fen"] == 15 * YI * 100
    assert ev["share_of_market"] == 0.8
    assert a["severity"] == "critical"


def test_market_seconds_are_checkpointed_sparse():
    """A day's market sell value per second is checkpointed as its non-zero seconds (86,400 a day otherwise, in
    every owner-stage checkpoint), and comes back whole, index levels included."""
    import msgpack
    import numpy as np

    from surveil.rules.market_context import SECONDS_PER_DAY, MarketContext
    from surveil.stream import checkpoint

    m = MarketContext(from_events=False)
    m.add_seconds(19772, np.array([34_200, 34_201, 50_000]), np.array([5, 7, 11]))
    m.add_index(19772, np.array([0]), np.array([3]), np.array([10**18]), np.array([29_000_000]))
    blob = checkpoint.pack(m.state())
    assert len(blob) < 8 * SECONDS_PER_DAY // 10
    back = MarketContext(from_events=False)
    back.restore(msgpack.unpackb(blob, strict_map_key=False))
    assert (back.days[19772].sell_value == m.days[19772].sell_value).all()
    assert back.market_value(19772, 0, 2**62) == m.market_value(19772, 0, 2**62)
    assert back.market_value(19772, 0, 2**62)[0] == 23
    assert back.index_path(19772, 0, 3, 10**18, 10**18 + 1) == m.index_path(19772, 0, 3, 10**18, 10**18 + 1)
