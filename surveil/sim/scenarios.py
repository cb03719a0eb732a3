"""Scenario events planted on top of the background market, with their expected alerts.

``lingjun``
    The 2024-02-19 reference case (domain notes §2): owner ``LINGJUN`` with four accounts (two on
    SSE, two on SZSE, four brokers) sells exactly 1,372,000,000 yuan on SZSE in 09:30:00–09:30:42
    and exactly 1,195,000,000 yuan on SSE in 09:30:00–09:31:00 through aggressive sell trades
    (2,567,000,000 yuan in one minute), and over the rest of the day buys more than it sells
    (net buyer of exactly 187,000,000 yuan). Also owner ``SPLIT`` (one SSE and one SZSE account,
    600,000,000 yuan each in the same minute: each venue under the 1,000,000,000-yuan default
    threshold, together over it) and owner ``SLOWSELL`` (3,000,000,000 yuan spread evenly over
    13:30–13:40, never 350,000,000 in any 60 s: no alert).
``hft``
    ``HFT_ABOVE`` (SSE): 300 orders+cancels in 10:00:01 and 350 in 10:30:05; ``HFT_BELOW`` (SZSE):
    299 in 10:20:02; ``HFT_STRADDLE`` (SSE): 150 in 10:15:00.5–10:15:01 and 150 in
    10:15:01–10:15:01.5 (300 in a sliding second, never 300 in a calendar second); ``DUP0001``: the
    same account string on SSE and SZSE, 200 each in 10:45:10 (two accounts, no alert). Each also
    trades a little during the day (executions, which do not count) and sends sparse orders and
    cancels away from its bursts.
``daily``
    ``DAILY_ABOVE`` (SZSE): exactly 20,000 orders+cancels over the continuous sessions;
    ``DAILY_BELOW`` (SSE): exactly 19,999.

Money is exact: a trade's value in yuan is ``price_cents * lots`` (price in 0.01 yuan, quantity in
lots of 100 shares), so sums of billions are integers; see :func:`exact_sum_trades`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from surveil.events.batch import Registry
from surveil.events.schema import CANCEL, NS_PER_SECOND, ORDER, SIDE_B, SIDE_S, TRADE, VENUE_CODE
from surveil.sim.market import (
    F_AGGRESSOR,
    F_OC,
    F_TRADE,
    SCENARIO_OID_START,
    SSE,
    SZSE,
    Calendar,
    EventBuf,
    SimAccount,
    SymbolTable,
)

NS = NS_PER_SECOND
MS = NS // 1000
#: the one-minute sell amount (yuan) the ``sell_burst_1m`` rule alerts at by default (not published)
SELL_BURST_THRESHOLD_YUAN = 1_000_000_000
SELL_BURST_WINDOW_NS = 60 * NS


@dataclass
class Ctx:
    cal: Calendar
    reg: Registry
    syms: SymbolTable
    next_oid: int = SCENARIO_OID_START

    def new_oids(self, n: int) -> np.ndarray:
        out = np.arange(self.next_oid, self.next_oid + n, dtype=np.uint64)
        self.next_oid += n
        return out


@dataclass
class ScenarioOut:
    name: str
    accounts: list[SimAccount] = field(default_factory=list)
    events: EventBuf = field(default_factory=EventBuf)
    labels: list[dict] = field(default_factory=list)


class Actor:
    """One scenario account and its registry ids."""

    def __init__(self, ctx: Ctx, out: ScenarioOut, venue: str, account: str, owner: str, broker: str,
                 reported: bool = True):
        self.ctx, self.buf = ctx, out.events
        self.info = SimAccount(venue, account, owner, broker, reported)
        out.accounts.append(self.info)
        self.v = VENUE_CODE[venue]
        reg = ctx.reg
        self.a = reg.accounts.intern(account)
        self.o = reg.owners.intern(owner)
        self.b = reg.brokers.intern(broker)
        self.symbols = ctx.syms.of_venue(self.v)

    def events(self, ts, etype: int, sym, side, price_cents, lots, oid, aggressor=None) -> None:
        """Emit events of one type (``sym`` are symbol-table indexes)."""
        ts = np.asarray(ts, np.int64)
        n = len(ts)
        if etype == TRADE:
            aggr = np.broadcast_to(np.asarray(aggressor, bool), (n,))
            flags = np.where(aggr, F_TRADE | F_AGGRESSOR, F_TRADE).astype(np.uint8)
        else:
            flags = F_OC
        self.buf.add(ts, self.v, etype, side=side, flags=flags, price=np.asarray(price_cents, np.int64) * 100,
                     qty=np.asarray(lots, np.int64) * 100, oid=oid, account=self.a,
                     symbol=self.ctx.syms.reg_id[np.asarray(sym, np.int64)], owner=self.o, broker=self.b)

    # ---- building blocks -----------------------------------------------------------------

    def _orders(self, rng: np.random.Generator, n: int):
        sym = self.symbols[rng.integers(0, len(self.symbols), n)]
        side = (1 + (rng.random(n) < 0.5)).astype(np.uint8)
        ref = self.ctx.syms.ref_cents[sym]
        price = np.maximum(1, np.rint(ref * (1 + 0.003 * rng.standard_normal(n)))).astype(np.int64)
        lots = np.minimum(rng.geometric(0.1, n), np.maximum(1, 300_000 // price))
        return sym, side, price, lots

    def oc_burst(self, rng: np.random.Generator, n: int, t0: int, t1: int, n_trades: int = 0) -> None:
        """Exactly ``n`` orders+cancels in [t0, t1): 3 of every 5 are orders, each cancel cancels the
        order just before it (an instant cancel). Plus ``n_trades`` fills of the surviving orders
        (executions, which do not count), also inside [t0, t1)."""
        ts = np.sort(rng.integers(t0, t1 - n, n)) + np.arange(n)  # strictly increasing, inside [t0, t1)
        pos = np.arange(n)
        is_c = np.isin(pos % 5, (2, 4))
        o_pos = np.flatnonzero(~is_c)
        oids = self.ctx.new_oids(len(o_pos))
        sym, side, price, lots = self._orders(rng, len(o_pos))
        self.events(ts[o_pos], ORDER, sym, side, price, lots, oids)
        order_of = np.cumsum(~is_c) - 1
        c_ref = order_of[np.flatnonzero(is_c) - 1]
        self.events(ts[is_c], CANCEL, sym[c_ref], side[c_ref], price[c_ref], lots[c_ref], oids[c_ref])
        if n_trades:
            alive = np.setdiff1d(np.arange(len(o_pos)), c_ref)
            pick = np.sort(rng.choice(alive, size=min(n_trades, len(alive)), replace=False))
            t_ts = ts[o_pos][pick] + 1 + rng.integers(0, np.maximum(1, t1 - 1 - ts[o_pos][pick]))
            self.events(t_ts, TRADE, sym[pick], side[pick], price[pick], lots[pick], oids[pick],
                        aggressor=rng.random(len(pick)) < 0.5)

    def sparse(self, rng: np.random.Generator, n_orders: int, n_cancels: int, n_trades: int,
               intervals: list[tuple[int, int]]) -> None:
        """``n_orders`` orders at random times in ``intervals``; ``n_cancels`` of them cancelled 0.2–20 s
        later and ``n_trades`` others filled 1 ms–10 s later (all inside the same interval)."""
        room = 25 * NS
        ts = np.sort(sample_times(rng, [(a, b - room) for a, b in intervals if b - a > room], n_orders))
        oids = self.ctx.new_oids(n_orders)
        sym, side, price, lots = self._orders(rng, n_orders)
        self.events(ts, ORDER, sym, side, price, lots, oids)
        chosen = rng.permutation(n_orders)
        c = np.sort(chosen[:n_cancels])
        t = np.sort(chosen[n_cancels:n_cancels + n_trades])
        self.events(ts[c] + rng.integers(200 * MS, 20 * NS, len(c)), CANCEL, sym[c], side[c], price[c], lots[c],
                    oids[c])
        self.events(ts[t] + rng.integers(MS, 10 * NS, len(t)), TRADE, sym[t], side[t], price[t], lots[t], oids[t],
                    aggressor=rng.random(len(t)) < 0.5)

    def fills(self, rng: np.random.Generator, ts: np.ndarray, sym: np.ndarray, side: int, price: np.ndarray,
              lots: np.ndarray, aggressive: np.ndarray) -> None:
        """One order per trade, entered 1–3 ms before an aggressive fill or 0.5–30 s before a passive one."""
        n = len(ts)
        oids = self.ctx.new_oids(n)
        lead = np.where(aggressive, rng.integers(MS, 3 * MS, n), rng.integers(NS // 2, 30 * NS, n))
        sides = np.full(n, side, np.uint8)
        self.events(ts - lead, ORDER, sym, sides, price, lots, oids)
        self.events(ts, TRADE, sym, sides, price, lots, oids, aggressor=aggressive)


# --------------------------------------------------------------------------------------------
# helpers

def sample_times(rng: np.random.Generator, intervals: list[tuple[int, int]], n: int) -> np.ndarray:
    """``n`` uniform random timestamps in the union of half-open ``intervals``."""
    iv = [(a, b) for a, b in intervals if b > a]
    lens = np.array([b - a for a, b in iv], np.int64)
    cum = np.concatenate([[0], np.cumsum(lens)])
    u = rng.integers(0, cum[-1], n)
    k = np.searchsorted(cum, u, side="right") - 1
    starts = np.array([a for a, _ in iv], np.int64)
    return starts[k] + (u - cum[k])


def subtract(intervals: list[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = list(intervals)
    for h0, h1 in holes:
        nxt = []
        for a, b in out:
            if h1 <= a or h0 >= b:
                nxt.append((a, b))
                continue
            if a < h0:
                nxt.append((a, h0))
            if h1 < b:
                nxt.append((h1, b))
        out = nxt
    return out


def exact_sum_trades(rng: np.random.Generator, total_yuan: int, syms: np.ndarray, ref_cents: np.ndarray,
                     lo_yuan: float, hi_yuan: float):
    """Trades ``(symbol, price_cents, lots)`` whose values ``price_cents * lots`` (yuan) add up to exactly
    ``total_yuan``, in random order.

    Random trades (log-uniform value in [lo, hi]) fill the total up to a remainder R >= P*(P+1), where
    P is the price of a ~10-yuan symbol; R is then closed exactly with L1 lots at P and L2 lots at
    P+1 cents (two adjacent ticks, coprime): L1 = -R mod (P+1), L2 = (R - P*L1) / (P+1), split into
    trades of at most ``hi`` yuan."""
    ref = ref_cents[syms]
    ci = int(np.argmin(np.abs(ref - 1000)))
    close_sym, P = int(syms[ci]), int(ref[ci])
    budget = total_yuan - P * (P + 1)
    if budget <= 0:
        raise ValueError(f"total {total_yuan} too small for exact closing trades")
    mean = (hi_yuan - lo_yuan) / np.log(hi_yuan / lo_yuan)
    n = int(budget / mean * 1.3) + 16
    sym = syms[rng.integers(0, len(syms), n)]
    price = np.maximum(1, np.rint(ref_cents[sym] * (1 + 0.002 * rng.standard_normal(n)))).astype(np.int64)
    value = np.exp(rng.uniform(np.log(lo_yuan), np.log(hi_yuan), n))
    lots = np.maximum(1, np.rint(value / price)).astype(np.int64)
    cs = np.cumsum(price * lots)
    k = int(np.searchsorted(cs, budget, side="right"))
    if k == n:
        raise AssertionError("exact_sum_trades: not enough trades drawn")
    rem = total_yuan - (int(cs[k - 1]) if k else 0)
    l1 = (-rem) % (P + 1)
    l2 = (rem - P * l1) // (P + 1)
    assert l2 >= 0 and P * l1 + (P + 1) * l2 == rem
    piece = max(1, int(hi_yuan // (P + 1)))
    c_price, c_lots = [], []
    for p, lots_total in ((P, l1), (P + 1, l2)):
        while lots_total > 0:
            take = min(piece, lots_total)
            c_price.append(p)
            c_lots.append(take)
            lots_total -= take
    sym = np.concatenate([sym[:k], np.full(len(c_price), close_sym)])
    price = np.concatenate([price[:k], np.array(c_price, np.int64)])
    lots = np.concatenate([lots[:k], np.array(c_lots, np.int64)])
    assert int((price * lots).sum()) == total_yuan
    perm = rng.permutation(len(sym))
    return sym[perm], price[perm], lots[perm]


def spread_times(rng: np.random.Generator, n: int, t0: int, t1: int) -> np.ndarray:
    """``n`` sorted, strictly increasing random timestamps in [t0, t1)."""
    return np.sort(rng.integers(t0, t1 - n, n)) + np.arange(n)


def peak_window_sum(ts: np.ndarray, value: np.ndarray, window_ns: int) -> tuple[int, int]:
    """Largest sum of ``value`` over windows (t - window, t] and the t where it is reached."""
    if len(ts) == 0:
        return 0, 0
    o = np.argsort(ts, kind="stable")
    ts, value = ts[o], value[o].astype(np.int64)
    cs = np.concatenate([[0], np.cumsum(value)])
    hi = np.searchsorted(ts, ts, side="right")
    lo = np.searchsorted(ts, ts - window_ns, side="right")
    sums = cs[hi] - cs[lo]
    i = int(np.argmax(sums))
    return int(sums[i]), int(ts[i])


def owner_sell_peak(buf: EventBuf, owner_id: int) -> tuple[int, int]:
    """Peak 60 s sell value (yuan) of an owner's trades in ``buf``: all sells, and aggressive sells only."""
    c = buf.arrays()
    m = (c["owner"] == owner_id) & (c["etype"] == TRADE) & (c["side"] == SIDE_S)
    val = (c["price"][m] // 100) * (c["qty"][m] // 100)  # cents * lots = yuan
    all_peak, _ = peak_window_sum(c["ts"][m], val, SELL_BURST_WINDOW_NS)
    ag = (c["flags"][m] & F_AGGRESSOR) != 0
    aggr_peak, _ = peak_window_sum(c["ts"][m][ag], val[ag], SELL_BURST_WINDOW_NS)
    return all_peak, aggr_peak


def _label(cal: Calendar, rule: str, subject: dict, scenario: str, value=None, **extra) -> dict:
    d = {"rule": rule, "subject": subject, "trading_day": cal.date}
    if value is None:
        d["expected"] = "none"
    else:
        d["expected"] = "alert"
        d["expected_value"] = value
    d["scenario"] = scenario
    d.update(extra)
    return d


# --------------------------------------------------------------------------------------------
# scenarios

LINGJUN_SZSE_YUAN = 1_372_000_000
LINGJUN_SSE_YUAN = 1_195_000_000
LINGJUN_NET_BUY_YUAN = 187_000_000
LINGJUN_DAY_SELL_YUAN = {SSE: 200_000_000, SZSE: 200_000_000}
SPLIT_PER_VENUE_YUAN = 600_000_000
SLOWSELL_TOTAL_YUAN = 3_000_000_000
SLOWSELL_MAX_60S_YUAN = 350_000_000


def lingjun(ctx: Ctx, rng: np.random.Generator) -> ScenarioOut:
    cal, reg, syms = ctx.cal, ctx.reg, ctx.syms
    out = ScenarioOut("lingjun")
    # --- LINGJUN: the reference case
    sh = [Actor(ctx, out, "SSE", "A9000001", "LINGJUN", "B011"), Actor(ctx, out, "SSE", "A9000002", "LINGJUN", "B017")]
    sz = [Actor(ctx, out, "SZSE", "0900000001", "LINGJUN", "B023"),
          Actor(ctx, out, "SZSE", "0900000002", "LINGJUN", "B038")]
    # a basket of 80 symbols per venue (the index heavyweights of the day, here: random picks)
    basket = {v: rng.choice(syms.of_venue(v), 80, replace=False) for v in (SSE, SZSE)}
    windows = {SZSE: (cal.ts(9, 30, 0, 50 * MS), cal.ts(9, 30, 41, 950 * MS)),
               SSE: (cal.ts(9, 30, 0, 50 * MS), cal.ts(9, 30, 59, 950 * MS))}
    totals = {SZSE: LINGJUN_SZSE_YUAN, SSE: LINGJUN_SSE_YUAN}
    actors = {SSE: sh, SZSE: sz}

    def trade_set(v, total, t_from, intervals, side, lo, hi, aggressive_p):
        sym, price, lots = exact_sum_trades(rng, total, basket[v], syms.ref_cents, lo, hi)
        n = len(sym)
        ts = np.sort(sample_times(rng, intervals, n)) if intervals else spread_times(rng, n, *t_from)
        who = rng.integers(0, len(actors[v]), n)
        aggr = rng.random(n) < aggressive_p
        for j, actor in enumerate(actors[v]):
            m = who == j
            actor.fills(rng, ts[m], sym[m], side, price[m], lots[m], aggr[m])

    for v in (SZSE, SSE):
        trade_set(v, totals[v], windows[v], None, SIDE_S, 300_000, 3_000_000, 1.0)
    # rest of the day: buys exceed all sells by exactly LINGJUN_NET_BUY_YUAN
    day = [(cal.ts(10, 0), cal.ts(11, 25)), (cal.ts(13, 5), cal.ts(14, 50))]
    day_sell = LINGJUN_DAY_SELL_YUAN
    day_buy_total = LINGJUN_SZSE_YUAN + LINGJUN_SSE_YUAN + sum(day_sell.values()) + LINGJUN_NET_BUY_YUAN
    day_buy = {SSE: day_buy_total // 2, SZSE: day_buy_total - day_buy_total // 2}
    for v in (SSE, SZSE):
        trade_set(v, day_sell[v], None, day, SIDE_S, 100_000, 1_500_000, 0.6)
        trade_set(v, day_buy[v], None, day, SIDE_B, 200_000, 3_000_000, 0.5)
    lj_owner = reg.owners.intern("LINGJUN")
    peak, peak_aggr = owner_sell_peak(out.events, lj_owner)
    assert peak == peak_aggr == LINGJUN_SZSE_YUAN + LINGJUN_SSE_YUAN, (peak, peak_aggr)
    out.labels.append(_label(
        cal, "sell_burst_1m", {"owner": "LINGJUN"}, "lingjun", peak * 100, unit="fen",
        by_venue_fen={"SSE": LINGJUN_SSE_YUAN * 100, "SZSE": LINGJUN_SZSE_YUAN * 100},
        net_buy_fen=LINGJUN_NET_BUY_YUAN * 100,
        note="2024-02-19 Lingjun: 25.67亿 sold in one minute across SSE and SZSE; net buyer over the day"))

    # --- SPLIT: 0.6e9 per venue in the same minute
    sp = {SSE: Actor(ctx, out, "SSE", "A9000011", "SPLIT", "B005"),
          SZSE: Actor(ctx, out, "SZSE", "0900000011", "SPLIT", "B009")}
    for v, actor in sp.items():
        sym, price, lots = exact_sum_trades(rng, SPLIT_PER_VENUE_YUAN, basket[v], syms.ref_cents, 500_000, 3_000_000)
        ts = spread_times(rng, len(sym), cal.ts(10, 5, 10), cal.ts(10, 5, 50))
        actor.fills(rng, ts, sym, SIDE_S, price, lots, np.ones(len(sym), bool))
    peak, peak_aggr = owner_sell_peak(out.events, reg.owners.intern("SPLIT"))
    assert peak == peak_aggr == 2 * SPLIT_PER_VENUE_YUAN
    out.labels.append(_label(
        cal, "sell_burst_1m", {"owner": "SPLIT"}, "lingjun", peak * 100, unit="fen",
        by_venue_fen={"SSE": SPLIT_PER_VENUE_YUAN * 100, "SZSE": SPLIT_PER_VENUE_YUAN * 100},
        note="each venue alone is under the threshold; the owner across venues is over it"))

    # --- SLOWSELL: 3e9 evenly over ten minutes, never 0.35e9 in 60 s
    ss = {SSE: Actor(ctx, out, "SSE", "A9000021", "SLOWSELL", "B014"),
          SZSE: Actor(ctx, out, "SZSE", "0900000021", "SLOWSELL", "B019")}
    t0, t1 = cal.ts(13, 30), cal.ts(13, 40)
    for k, (v, actor) in enumerate(ss.items()):
        sym, price, lots = exact_sum_trades(rng, SLOWSELL_TOTAL_YUAN // 2, basket[v], syms.ref_cents,
                                            900_000, 1_100_000)
        n = len(sym)
        step = (t1 - t0) // n
        ts = t0 + step // 2 * k + step * np.arange(n) + rng.integers(0, step // 4, n)
        actor.fills(rng, ts, sym, SIDE_S, price, lots, np.ones(n, bool))
    peak, _ = owner_sell_peak(out.events, reg.owners.intern("SLOWSELL"))
    assert peak < SLOWSELL_MAX_60S_YUAN, peak
    out.labels.append(_label(cal, "sell_burst_1m", {"owner": "SLOWSELL"}, "lingjun", None, max_value=peak * 100,
                             unit="fen", total_fen=SLOWSELL_TOTAL_YUAN * 100,
                             note="a large seller spread evenly over ten minutes: never the threshold in 60 s"))
    return out


def hft(ctx: Ctx, rng: np.random.Generator) -> ScenarioOut:
    cal = ctx.cal
    out = ScenarioOut("hft")
    cont = cal.continuous()
    s = cal.ts

    def pad(a, b):
        return (a - 5 * NS, b + 5 * NS)

    above = Actor(ctx, out, "SSE", "HFT_ABOVE", "HFT_ABOVE", "B003")
    bursts = [(300, s(10, 0, 1), s(10, 0, 2)), (350, s(10, 30, 5), s(10, 30, 6))]
    for n, a, b in bursts:
        above.oc_burst(rng, n, a, b, n_trades=20)
    above.sparse(rng, 3000, 1500, 300, subtract(cont, [pad(a, b) for _, a, b in bursts]))
    out.labels.append(_label(cal, "order_rate_1s", {"venue": "SSE", "account": "HFT_ABOVE"}, "hft", 350,
                             seconds={"10:00:01": 300, "10:30:05": 350},
                             note="300 (>= threshold) in one calendar second and 350 in another: one alert, peak 350"))

    below = Actor(ctx, out, "SZSE", "HFT_BELOW", "HFT_BELOW", "B004")
    a, b = s(10, 20, 2), s(10, 20, 3)
    below.oc_burst(rng, 299, a, b, n_trades=20)
    below.sparse(rng, 1500, 800, 150, subtract(cont, [pad(a, b)]))
    out.labels.append(_label(cal, "order_rate_1s", {"venue": "SZSE", "account": "HFT_BELOW"}, "hft", None,
                             max_value=299, note="299 in one calendar second: just under"))

    strad = Actor(ctx, out, "SSE", "HFT_STRADDLE", "HFT_STRADDLE", "B006")
    a, m, b = s(10, 15, 0, NS // 2 + 1), s(10, 15, 1), s(10, 15, 1, NS // 2)
    strad.oc_burst(rng, 150, a, m)
    strad.oc_burst(rng, 150, m, b)
    strad.sparse(rng, 1500, 800, 150, subtract(cont, [pad(a, b)]))
    out.labels.append(_label(cal, "order_rate_1s", {"venue": "SSE", "account": "HFT_STRADDLE"}, "hft", None,
                             mode="calendar", max_value=150, sliding_value=300,
                             note="150 + 150 across a second boundary: 300 within a sliding second only"))

    a, b = s(10, 45, 10), s(10, 45, 11)
    for venue, broker in (("SSE", "B007"), ("SZSE", "B008")):
        dup = Actor(ctx, out, venue, "DUP0001", f"DUP0001.{venue}", broker, reported=False)
        dup.oc_burst(rng, 200, a, b)
        dup.sparse(rng, 500, 300, 50, subtract(cont, [pad(a, b)]))
        out.labels.append(_label(cal, "order_rate_1s", {"venue": venue, "account": "DUP0001"}, "hft", None,
                                 max_value=200,
                                 note="same account string on SSE and SZSE: two accounts, 200 each, not 400"))
    return out


def daily(ctx: Ctx, rng: np.random.Generator) -> ScenarioOut:
    cal = ctx.cal
    out = ScenarioOut("daily")
    cont = cal.continuous()
    above = Actor(ctx, out, "SZSE", "DAILY_ABOVE", "DAILY_ABOVE", "B021")
    above.sparse(rng, 12_000, 8_000, 1_500, cont)
    out.labels.append(_label(cal, "daily_orders_20k", {"venue": "SZSE", "account": "DAILY_ABOVE"}, "daily",
                             20_000, note="exactly 20,000 orders+cancels in the day"))
    below = Actor(ctx, out, "SSE", "DAILY_BELOW", "DAILY_BELOW", "B022")
    below.sparse(rng, 12_000, 7_999, 1_500, cont)
    out.labels.append(_label(cal, "daily_orders_20k", {"venue": "SSE", "account": "DAILY_BELOW"}, "daily",
                             None, max_value=19_999, note="19,999 orders+cancels: just under"))
    return out


SCENARIOS: dict[str, Callable[[Ctx, np.random.Generator], ScenarioOut]] = {
    "lingjun": lingjun,
    "hft": hft,
    "daily": daily,
}
