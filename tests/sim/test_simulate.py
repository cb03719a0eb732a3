"""Tests of the synthetic trading-day generator (surveil.sim)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from surveil.events.batch import Batch, Registry
from surveil.events.io import read_events
from surveil.events.schema import (
    CANCEL,
    F_AGGRESSOR,
    F_HAS_AGGRESSOR,
    F_HAS_ORDER_ID,
    F_HAS_SEQ,
    INDEX,
    NS_PER_SECOND,
    ORDER,
    SIDE_B,
    SIDE_S,
    TRADE,
    VENUE_CODE,
    day_start_ns,
    trading_day_index,
)
from surveil.sim import KNOWN_SCENARIOS, SimResult, simulate

NS = NS_PER_SECOND
DATE = "2024-02-19"
DAY0 = day_start_ns(19772)  # 2024-02-19 00:00 Asia/Shanghai
SSE, SZSE = VENUE_CODE["SSE"], VENUE_CODE["SZSE"]
SCEN_OWNERS = {"LINGJUN", "SPLIT", "SLOWSELL", "HFT_ABOVE", "HFT_BELOW", "HFT_STRADDLE", "DAILY_ABOVE",
               "DAILY_BELOW", "DUP0001.SSE", "DUP0001.SZSE"}
SPAN = 100_000_000_000_000  # > one day in ns: separates groups in a combined int64 sort key


def hms(h, m, s=0):
    return h * 3600 + m * 60 + s


def at(h, m, s=0, ns=0):
    return DAY0 + hms(h, m, s) * NS + ns


class Day:
    """An event file read back, with handy views."""

    def __init__(self, res: SimResult):
        self.res = res
        self.reg = Registry()
        rejects: list = []
        self.b = Batch.concat(list(read_events(res.events_path, self.reg, rejects)))
        assert rejects == []
        b = self.b
        self.acct = np.array(self.reg.accounts.names + [None], dtype=object)[b.account]
        self.owner = np.array(self.reg.owners.names + [None], dtype=object)[b.owner]
        self.symbol = np.array(self.reg.symbols.names + [None], dtype=object)[b.symbol]
        self.sec = (b.ts - DAY0) // NS  # local second of day
        has = (b.flags & F_HAS_ORDER_ID) != 0
        oid = np.zeros(len(b), np.int64)
        oid[has] = b.order_id[has].astype(np.int64)
        self.oid = oid
        self.oc = (b.etype == ORDER) | (b.etype == CANCEL)
        self.yuan = (b.price // 100) * (b.qty // 100)  # cents * lots

    def mask(self, venue: str, account: str) -> np.ndarray:
        return (self.b.venue == VENUE_CODE[venue]) & (self.acct == account)

    def owner_mask(self, owner: str) -> np.ndarray:
        return self.owner == owner


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> Day:
    out = tmp_path_factory.mktemp("sim") / "day.svb"
    res = simulate(out, events=150_000, accounts=3_000, seed=7, date=DATE)
    return Day(res)


@pytest.fixture(scope="module")
def labels(day) -> list[dict]:
    return [json.loads(line) for line in day.res.labels_path.read_text().splitlines()]


def _label(labels, rule, subject):
    found = [x for x in labels if x["rule"] == rule and x["subject"] == subject]
    assert len(found) == 1, (rule, subject, found)
    return found[0]


# ---------------------------------------------------------------------------------------------
# API and files


def test_result_and_files(day):
    res = day.res
    assert res.events_path.name == "day.svb"
    assert res.accounts_path.name == "day.accounts.csv"
    assert res.labels_path.name == "day.labels.jsonl"
    assert res.scenarios == ["lingjun", "hft", "daily"]
    assert res.n_events == len(day.b)
    # background events exactly 150,000 (orders, cancels and trades of non-scenario accounts)
    bg = (day.b.etype != INDEX) & ~np.isin(day.owner, list(SCEN_OWNERS))
    assert int(bg.sum()) == 150_000


def test_unknown_scenario_and_bad_extension(tmp_path):
    with pytest.raises(ValueError) as e:
        simulate(tmp_path / "x.svb", scenarios=("lingjun", "nosuch"), events=1000, accounts=100)
    msg = str(e.value)
    assert "nosuch" in msg and all(k in msg for k in KNOWN_SCENARIOS)
    with pytest.raises(ValueError):
        simulate(tmp_path / "x.csv", events=1000, accounts=100)
    with pytest.raises(ValueError):
        simulate(tmp_path / "x.svb", events=10_000_000, accounts=100)  # would need hot accounts


def test_deterministic(tmp_path):
    kw = dict(events=30_000, accounts=500, seed=3)
    a = simulate(tmp_path / "a.svb", **kw)
    b = simulate(tmp_path / "b.svb", **kw)
    c = simulate(tmp_path / "c.svb", **{**kw, "seed": 4})
    for x, y in ((a.events_path, b.events_path), (a.accounts_path, b.accounts_path), (a.labels_path, b.labels_path)):
        assert x.read_bytes() == y.read_bytes()
    assert a.events_path.read_bytes() != c.events_path.read_bytes()
    j1 = simulate(tmp_path / "j1.jsonl", **kw)
    j2 = simulate(tmp_path / "j2.jsonl", **kw)
    assert j1.events_path.read_bytes() == j2.events_path.read_bytes()
    # the JSON Lines file holds the same events as the binary one
    da, dj = Day(a), Day(j1)
    assert len(da.b) == len(dj.b) == a.n_events == j1.n_events
    for col in ("ts", "venue", "etype", "side", "flags", "price", "qty", "seq"):
        assert np.array_equal(getattr(da.b, col), getattr(dj.b, col)), col
    assert np.array_equal(da.acct, dj.acct) and np.array_equal(da.oid, dj.oid)


def test_gzip_output_readable(tmp_path):
    res = simulate(tmp_path / "g.jsonl.gz", scenarios=["hft"], events=5_000, accounts=200)
    d = Day(res)
    assert len(d.b) == res.n_events
    assert res.accounts_path.name == "g.accounts.csv" and res.labels_path.name == "g.labels.jsonl"


def test_no_scenarios(tmp_path):
    res = simulate(tmp_path / "n.svb", scenarios=(), events=20_000, accounts=300)
    d = Day(res)
    assert res.labels_path.read_text() == ""
    assert set(d.acct[d.b.etype != INDEX]).issubset({r["account"] for r in csv.DictReader(res.accounts_path.open())})
    # no Lingjun minute: index every 3 s only
    idx = d.b.etype == INDEX
    assert np.all(d.sec[idx] % 3 == 0)


# ---------------------------------------------------------------------------------------------
# stream invariants


def test_sorted_and_one_day(day):
    assert np.all(np.diff(day.b.ts) >= 0)
    assert np.all(trading_day_index(day.b.ts) == 19772)


def test_sessions(day):
    s, et = day.sec, day.b.etype
    open_c = (s >= hms(9, 15)) & (s < hms(9, 20))
    open_nc = (s >= hms(9, 20)) & (s < hms(9, 25))
    cont = ((s >= hms(9, 30)) & (s < hms(11, 30))) | ((s >= hms(13, 0)) & (s < hms(14, 57)))
    close = (s >= hms(14, 57)) & (s < hms(15, 0))
    assert np.all(open_c | open_nc | cont | close)
    assert not np.any((et == CANCEL) & (open_nc | close))
    assert not np.any((et == TRADE) & ~cont)
    # every session has activity
    for m in (open_c, open_nc, cont, close):
        assert np.any(m & (et == ORDER))


def test_fields_and_mix(day):
    b = day.b
    trade = b.etype == TRADE
    notidx = b.etype != INDEX
    assert np.all(b.flags & F_HAS_SEQ)
    assert np.all(b.flags[notidx] & F_HAS_ORDER_ID) and not np.any(b.flags[~notidx] & F_HAS_ORDER_ID)
    assert np.all(b.price[notidx] % 100 == 0) and np.all(b.price[notidx] > 0)
    assert np.all(b.qty[notidx] % 100 == 0) and np.all(b.qty[notidx] > 0)
    assert np.all(np.isin(b.side[notidx], (SIDE_B, SIDE_S)))
    assert np.all(b.flags[trade] & F_HAS_AGGRESSOR)
    ag = (b.flags[trade] & F_AGGRESSOR) != 0
    assert 0 < ag.sum() < trade.sum()
    assert np.all(b.account[notidx] >= 0) and np.all(b.account[~notidx] < 0)
    # background mix roughly 55 / 30 / 15
    bg = notidx & ~np.isin(day.owner, list(SCEN_OWNERS))
    frac = np.bincount(b.etype[bg], minlength=3)[:3] / bg.sum()
    assert 0.45 < frac[0] < 0.70 and 0.15 < frac[1] < 0.35 and 0.05 < frac[2] < 0.20, frac


def test_seq_per_venue(day):
    for v in range(3):
        seq = day.b.seq[day.b.venue == v]
        if len(seq):
            assert np.array_equal(seq, np.arange(1, len(seq) + 1))


def test_cancels_and_trades_refer_to_earlier_orders(day):
    b = day.b
    key = lambda m: list(zip(b.venue[m].tolist(), day.oid[m].tolist(), strict=True))  # noqa: E731
    om = b.etype == ORDER
    orders = {}
    for k, ts, a, p, q in zip(key(om), b.ts[om].tolist(), b.account[om].tolist(), b.price[om].tolist(),
                              b.qty[om].tolist(), strict=True):
        assert k not in orders, "duplicate order id"
        orders[k] = (ts, a, p, q)
    cm = b.etype == CANCEL
    seen = set()
    for k, ts, a, p, q in zip(key(cm), b.ts[cm].tolist(), b.account[cm].tolist(), b.price[cm].tolist(),
                              b.qty[cm].tolist(), strict=True):
        ots, oa, op, oq = orders[k]
        assert ots <= ts and oa == a and op == p and oq == q
        assert k not in seen, "order cancelled twice"
        seen.add(k)
    tm = b.etype == TRADE
    for k, ts, a, q in zip(key(tm), b.ts[tm].tolist(), b.account[tm].tolist(), b.qty[tm].tolist(), strict=True):
        ots, oa, _, oq = orders[k]
        assert ots <= ts and oa == a and q <= oq
        assert k not in seen, "a cancelled order traded"


def test_accounts_csv(day):
    rows = list(csv.DictReader(day.res.accounts_path.open()))
    assert list(rows[0]) == ["venue", "account", "owner", "broker", "reported"]
    pairs = {(r["venue"], r["account"]) for r in rows}
    assert len(pairs) == len(rows)
    assert all(r["reported"] in ("true", "false") for r in rows)
    venues = ("SSE", "SZSE", "BSE")
    notidx = day.b.etype != INDEX
    used = set(zip([venues[v] for v in day.b.venue[notidx].tolist()], day.acct[notidx].tolist(), strict=True))
    assert used <= pairs
    by = {(r["venue"], r["account"]): r for r in rows}
    # the event owner/broker agree with the CSV
    brokers = np.array(day.reg.brokers.names, dtype=object)
    first = np.flatnonzero(notidx)[:5000]
    for v, a, o, br in zip(day.b.venue[first].tolist(), day.acct[first].tolist(), day.owner[first].tolist(),
                           brokers[day.b.broker[first]].tolist(), strict=True):
        row = by[(venues[v], a)]
        # background events carry no owner (as an exchange feed): owners come from reference data only
        assert (o is None or row["owner"] == o) and row["broker"] == br
    lj = [r for r in rows if r["owner"] == "LINGJUN"]
    assert len(lj) == 4 and sorted(r["venue"] for r in lj) == ["SSE", "SSE", "SZSE", "SZSE"]
    assert len({r["broker"] for r in lj}) == 4
    for acct in ("HFT_ABOVE", "HFT_BELOW", "HFT_STRADDLE", "DAILY_ABOVE", "DAILY_BELOW"):
        assert any(r["account"] == acct for r in rows)
    assert ("SSE", "DUP0001") in pairs and ("SZSE", "DUP0001") in pairs
    assert any(r["owner"].startswith("M") and r["owner"][1:].isdigit() for r in rows)
    assert {r["venue"] for r in rows} == {"SSE", "SZSE", "BSE"}
    # an account string belongs to one venue (except the planted DUP0001)
    accts = [r["account"] for r in rows if r["account"] != "DUP0001"]
    assert len(accts) == len(set(accts))


# ---------------------------------------------------------------------------------------------
# scenarios


def test_labels(labels):
    assert all(x["trading_day"] == DATE for x in labels)
    lj = _label(labels, "sell_burst_1m", {"owner": "LINGJUN"})
    assert lj["expected"] == "alert" and lj["expected_value"] == 2_567_000_000 * 100 and lj["scenario"] == "lingjun"
    assert _label(labels, "sell_burst_1m", {"owner": "SPLIT"})["expected_value"] == 1_200_000_000 * 100
    assert _label(labels, "sell_burst_1m", {"owner": "SLOWSELL"})["expected"] == "none"
    ha = _label(labels, "order_rate_1s", {"venue": "SSE", "account": "HFT_ABOVE"})
    assert ha["expected"] == "alert" and ha["expected_value"] == 350
    for v, a in (("SZSE", "HFT_BELOW"), ("SSE", "HFT_STRADDLE"), ("SSE", "DUP0001"), ("SZSE", "DUP0001")):
        assert _label(labels, "order_rate_1s", {"venue": v, "account": a})["expected"] == "none"
    da = _label(labels, "daily_orders_20k", {"venue": "SZSE", "account": "DAILY_ABOVE"})
    assert da["expected"] == "alert" and da["expected_value"] == 20_000
    assert _label(labels, "daily_orders_20k", {"venue": "SSE", "account": "DAILY_BELOW"})["expected"] == "none"
    positives = [x for x in labels if x["expected"] == "alert"]
    assert len(positives) == 4 and all(isinstance(x["expected_value"], int) for x in positives)


def _per_second(day, m):
    s, c = np.unique(day.sec[m & day.oc], return_counts=True)
    return dict(zip(s.tolist(), c.tolist(), strict=True))


def _sliding_max(ts: np.ndarray, window: int) -> int:
    if len(ts) == 0:
        return 0
    ts = np.sort(ts)
    return int((np.arange(len(ts)) - np.searchsorted(ts, ts - window, side="right") + 1).max())


def test_hft_counts(day):
    above = day.mask("SSE", "HFT_ABOVE")
    per = _per_second(day, above)
    assert per[hms(10, 0, 1)] == 300 and per[hms(10, 30, 5)] == 350
    assert sorted(per.values())[-3] < 20
    assert np.any(above & (day.b.etype == TRADE) & (day.sec == hms(10, 0, 1)))  # executions do not count
    assert (above & day.oc).sum() < 20_000
    below = _per_second(day, day.mask("SZSE", "HFT_BELOW"))
    assert below[hms(10, 20, 2)] == 299 and max(below.values()) == 299
    sm = day.mask("SSE", "HFT_STRADDLE")
    st = _per_second(day, sm)
    assert st[hms(10, 15, 0)] == 150 and st[hms(10, 15, 1)] == 150 and max(st.values()) == 150
    assert _sliding_max(day.b.ts[sm & day.oc], NS) == 300
    for v in ("SSE", "SZSE"):
        dup = _per_second(day, day.mask(v, "DUP0001"))
        assert dup[hms(10, 45, 10)] == 200 and max(dup.values()) == 200


def test_daily_counts(day):
    for v, a, n in (("SZSE", "DAILY_ABOVE", 20_000), ("SSE", "DAILY_BELOW", 19_999)):
        m = day.mask(v, a)
        assert int((m & day.oc).sum()) == n
        assert (m & (day.b.etype == TRADE)).sum() > 0
        assert max(_per_second(day, m).values()) < 30
        assert _sliding_max(day.b.ts[m & day.oc], NS) < 30


def test_lingjun(day):
    b = day.b
    lj = day.owner_mask("LINGJUN")
    sell = lj & (b.etype == TRADE) & (b.side == SIDE_S)
    buy = lj & (b.etype == TRADE) & (b.side == SIDE_B)
    sz = sell & (b.venue == SZSE) & (b.ts >= at(9, 30)) & (b.ts <= at(9, 30, 42))
    sh = sell & (b.venue == SSE) & (b.ts >= at(9, 30)) & (b.ts <= at(9, 31))
    assert int(day.yuan[sz].sum()) == 1_372_000_000
    assert int(day.yuan[sh].sum()) == 1_195_000_000
    assert int(day.yuan[sz | sh].sum()) == 2_567_000_000
    assert np.all(b.flags[sz | sh] & F_AGGRESSOR)
    assert len(set(day.acct[sz].tolist())) == 2 and len(set(day.acct[sh].tolist())) == 2
    assert (sz | sh).sum() > 500  # many trades of realistic size
    assert day.yuan[sz | sh].max() <= 3_500_000
    # net buyer over the day, exactly 1.87亿
    assert int(day.yuan[buy].sum()) - int(day.yuan[sell].sum()) == 187_000_000
    # the peak 60 s sell value is the burst; no other 60 s window comes near the threshold
    ts, val = b.ts[sell], day.yuan[sell]
    hi = np.searchsorted(ts, ts, side="right")
    lo = np.searchsorted(ts, ts - 60 * NS, side="right")
    cs = np.concatenate([[0], np.cumsum(val)])
    win = cs[hi] - cs[lo]
    assert win.max() == 2_567_000_000
    assert win[ts > at(9, 32)].max() < 100_000_000
    # every order+cancel rate stays far from the thresholds
    for a in set(day.acct[lj].tolist()):
        m = lj & (day.acct == a)
        assert max(_per_second(day, m).values()) < 100


def test_split_and_slowsell(day):
    b = day.b
    for owner, total in (("SPLIT", 1_200_000_000), ("SLOWSELL", 3_000_000_000)):
        m = day.owner_mask(owner) & (b.etype == TRADE) & (b.side == SIDE_S)
        assert int(day.yuan[m].sum()) == total
        for v in (SSE, SZSE):
            assert int(day.yuan[m & (b.venue == v)].sum()) == total // 2
        ts, val = b.ts[m], day.yuan[m]
        cs = np.concatenate([[0], np.cumsum(val)])
        win = cs[np.searchsorted(ts, ts, side="right")] - cs[np.searchsorted(ts, ts - 60 * NS, side="right")]
        if owner == "SPLIT":
            assert win.max() == 1_200_000_000
        else:
            assert win.max() < 350_000_000
            assert ts.min() >= at(13, 30) and ts.max() < at(13, 40)


def test_index_levels(day):
    b = day.b
    idx = b.etype == INDEX
    assert np.all(b.account[idx] < 0) and np.all(b.flags[idx] & F_HAS_SEQ)
    lv = {}
    for v, sym in ((SSE, "000001"), (SSE, "000688"), (SZSE, "399001"), (SZSE, "399106"), (SZSE, "399006")):
        m = idx & (b.venue == v) & (day.symbol == sym)
        secs = day.sec[m]
        assert np.all((secs % 3 == 0) | ((secs >= hms(9, 30)) & (secs <= hms(9, 31))))
        burst = (secs >= hms(9, 30)) & (secs <= hms(9, 31))
        assert burst.sum() == 61  # one per second through the Lingjun minute
        lv[sym] = dict(zip(secs.tolist(), (b.price[m] / 10_000).tolist(), strict=True))
        assert np.all(b.price[m] % 100 == 0)
    assert lv["000001"][hms(9, 30)] == 2886.59 and lv["000001"][hms(9, 31)] == 2868.07
    assert lv["399001"][hms(9, 30)] == 8957.00 and lv["399001"][hms(9, 31)] == 8875.00
    assert lv["399006"][hms(9, 31)] < lv["399006"][hms(9, 30)]


# ---------------------------------------------------------------------------------------------
# background stays clear of every threshold


def _check_background(d: Day):
    b = d.b
    bg = (b.etype != INDEX) & ~np.isin(d.owner, list(SCEN_OWNERS))
    # orders + cancels per account: day, calendar second, sliding second
    oc = bg & d.oc
    _, key = np.unique(b.venue[oc].astype(np.int64) * (1 << 40) + b.account[oc], return_inverse=True)
    glob = np.sort(key.astype(np.int64) * SPAN + (b.ts[oc] - DAY0))  # accounts kept apart
    _, day_counts = np.unique(key, return_counts=True)
    assert day_counts.max() < 12_000
    _, per_sec = np.unique(glob // NS, return_counts=True)  # calendar seconds (SPAN is a multiple of NS)
    assert per_sec.max() < 100
    # sliding: events of the same account within (t - 1 s, t]
    first = np.searchsorted(glob, glob - NS, side="right")
    assert (np.arange(len(glob)) - first + 1).max() < 100
    # sells per owner in any 60 s window
    sm = bg & (b.etype == TRADE) & (b.side == SIDE_S)
    g = b.owner[sm].astype(np.int64) * SPAN + (b.ts[sm] - DAY0)
    o = np.argsort(g, kind="stable")
    g, val = g[o], d.yuan[sm][o]
    cs = np.concatenate([[0], np.cumsum(val)])
    win = cs[np.arange(1, len(g) + 1)] - cs[np.searchsorted(g, g - 60 * NS, side="right")]
    assert win.max() < 200_000_000
    return day_counts.max(), per_sec.max(), win.max()


def test_background_limits(day):
    _check_background(day)


def test_background_limits_dense(tmp_path):
    """Few accounts, many events: the caps are what keeps the busiest accounts clear."""
    res = simulate(tmp_path / "dense.svb", scenarios=(), events=2_000_000, accounts=500, seed=11)
    d = Day(res)
    top_day, top_sec, top_sell = _check_background(d)
    assert top_day > 5_000  # the cap was actually exercised
