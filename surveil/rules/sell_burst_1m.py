"""sell_burst_1m — large one-minute sell bursts by one owner across accounts and venues.

Regulatory text: the 2025 programmatic-trading implementation rules name
短时间大额成交 (large trades in a short time): a main index's one-minute fall together
with an account's, or its manager's, active sell amount and its share of market
turnover in that minute. The rules say only "reaches a certain standard": the
amount threshold is **not published**. Our default, 1,000,000,000 yuan (10亿) in
60 seconds, is chosen from the reference case: on 2024-02-19 one manager (宁波灵均)
sold 2.567 billion yuan in about one minute through several accounts on SSE and
SZSE, each exchange seeing only about half; one manager's products can be aggregated.

Measure: per **owner** (manager / beneficial controller, from reference data or the
event's ``owner``; an account without one is its own owner, named ``VENUE:account``),
across all its accounts and all venues, the executed sell value (``trade`` events with
side ``S``, qty x price) within any 60-second window of event time, windows
``(t - 60 s, t]``. ``aggressive_only`` counts only trades that took liquidity
(``aggressor: true``). Overlapping qualifying windows make one alert (a burst); a
qualifying window that starts after the last one ended starts another. The alert is
raised at the first qualifying window and made final once event time has passed the
last qualifying window by 60 s (or the day ends).

Evidence: burst start and end, the peak 60-second value and its window, the
breakdown of the peak window by venue and by account row (an account's owner, broker and
the valid_from of its reference row as of each trade: an account whose row changed within
the window is listed once per row), sample order
ids, the main index levels over the burst and the whole market's sell-side traded
value in the peak window when the input carries them.

``by_broker``: each member firm's own burst within the owner's, made from that firm's trades only (its
first to last trade in the burst, its own peak window, breakdowns and share of the market; raised: what it
sold in the window that raised the alert), as ``{firm: {window_start, window_end, value, evidence}}``. A
member firm's copy of the alert is that firm's entry and nothing of the owner's figures or windows
(docs/rules.md, "A member firm's copy"). A burst keeps its owner's trades from its start to its end for this.

``peak_per_second`` (final alerts, for the charts of the console and the replay
report): the peak window second by second, ``{"start", "start_iso", "seconds",
"accounts": [{"venue", "account", "broker", "valid_from", "value_fen": [one value per second]}],
"accounts_omitted"}``; seconds are calendar seconds from the one holding the window's
first trade (at most 61), accounts in ``by_account`` order, at most 20.

Money in the alert is integer fen (0.01 yuan, the unit exchanges publish traded values
in, rounded half up from the exact sums in 1/10000 yuan): ``value`` and ``threshold``
(``"unit": "fen"``), ``value_when_raised_fen``, ``peak_value_fen``, ``by_venue_fen``,
``by_account[].value_fen``, ``peak_per_second.accounts[].value_fen`` and
``market_sell_value_fen``. The threshold setting stays in whole yuan
(``threshold_yuan``).

Known false positives: index rebalancing and ETF creation flows executed by one
manager; block trades reported as ordinary executions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from surveil.engine.refdata import SINCE_ALWAYS, valid_from_text
from surveil.events.schema import F_AGGRESSOR, NS_PER_SECOND, PRICE_SCALE, SIDE_S, TRADE, VENUES, fen, ns_to_iso
from surveil.rules.base import (
    AlertDraft,
    Inputs,
    OidCarry,
    Param,
    Reference,
    Rule,
    RuleMeta,
    Segment,
    account_entry,
    array_data,
    from_array_data,
    positive,
    series,
)

SAMPLES = 5
#: the peak window's per-second sell value is listed for at most this many accounts (the largest)
PER_SECOND_ACCOUNTS = 20
#: what a burst keeps of each of its owner's trades
LOG_KEYS = ("ts", "key", "venue", "val", "broker", "from")
MAIN_INDEXES = ["SSE:000001", "SSE:000688", "SZSE:399001", "SZSE:399106", "SZSE:399006"]

META = RuleMeta(
    id="sell_burst_1m",
    version=1,
    title="Large one-minute sell burst by one owner across accounts and venues",
    description=__doc__.split("\n\n")[0],
    references=(
        Reference("SSE/SZSE programmatic trading implementation rules",
                  "abnormal programmatic trading: 短时间大额成交 (large trades in a short time)", "2025-07-07"),
        Reference("SSE and SZSE measures against 宁波灵均 (the reference case, docs/domain.md)",
                  "2.567 bn yuan sold in about one minute on 2024-02-19; trading restricted 2024-02-20 to 02-22",
                  ""),
    ),
    params=(
        Param("threshold_yuan", 1_000_000_000, int, False,
              "chosen: not published; 10亿 yuan, below the 2024-02-19 reference case (25.67亿)",
              "executed sell value of one owner within the window, yuan", positive),
        Param("window_seconds", 60, int, False, "chosen: the rules measure one minute (the amount is unpublished)",
              "length of the sliding event-time window", positive),
        Param("aggressive_only", False, bool, False, "chosen", "count only trades with aggressor = true"),
        Param("critical_multiple", 2.0, (int, float), False, "chosen: the Lingjun measures",
              "a peak of this multiple of the threshold makes the alert critical", positive),
        Param("index_drop_pct", 0.5, (int, float), False, "chosen: the rules name a main index's 1-minute fall",
              "a main index falling this many percent during the burst makes the alert critical", positive),
        Param("main_indexes", MAIN_INDEXES, list, True,
              "rules: SSE 上证综指, 科创50; SZSE 深证成指, 深证综指, 创业板指",
              'indexes reported with a burst, as "VENUE:CODE"',
              lambda v: None if all(":" in x and x.split(":")[0] in VENUES for x in v)
              else 'each entry must be "VENUE:CODE" with VENUE one of SSE, SZSE, BSE'),
    ),
    false_positives=("index rebalancing / ETF creation flows of one manager", "block trades"),
    key="owner",
    inputs=Inputs(types=("trade",), sides=("S",), market=True,
                  fields=("ts", "venue", "type", "side", "aggressor", "price", "qty", "account", "owner", "broker",
                          "order_id")),
    severity="high",
    measure="written_warning",
    chart="sell_burst",
    # 2: each trade carries its broker and the valid_from of its reference row; the breakdowns are per account
    # row (an account that changed broker within a window appears once per row)
    # 3: a burst keeps its owner's trades, for each member firm's own figures (by_broker)
    state_version=3,
)


def window_sums(t: np.ndarray, vals: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """For trades at times ``t`` (ascending) of values ``vals``: for each trade i, the position of the first trade
    of its window ``(t[i] - window, t[i]]`` and that window's sum (a trade that shares its time with later ones
    does not end a complete window: callers look at the last trade of a time)."""
    cum = np.cumsum(vals)
    left = np.searchsorted(t, t - window, "right")
    return left, cum - np.where(left > 0, cum[np.maximum(left - 1, 0)], 0)


@dataclass
class _Burst:
    owner: int
    day: int
    start: int
    last_qual: int
    raised_value: int
    peak: int = 0
    peak_start: int = 0
    peak_end: int = 0
    by_venue: dict = field(default_factory=dict)
    by_account: list = field(default_factory=list)  # (account key, value, trades, broker id, valid_from)
    trades: int = 0
    samples: list = field(default_factory=list)
    # (first second ns, seconds, {by_account index: per-second values}) of the peak window; a class-level
    # default so that checkpoints written before this field existed still load
    per_second: tuple | None = None
    # the owner's trades from the burst's start on (LOG_KEYS), for each member firm's own figures (by_broker)
    log: list = field(default_factory=list)

    def to_data(self) -> list:
        ps = None
        if self.per_second is not None:
            start, nsec, grid = self.per_second
            ps = [start, nsec, [[k, array_data(v)] for k, v in grid.items()]]
        log = {k: array_data(v) for k, v in self.trades_logged().items()}
        return [self.owner, self.day, self.start, self.last_qual, self.raised_value, self.peak, self.peak_start,
                self.peak_end, self.by_venue, [list(x) for x in self.by_account], self.trades, self.samples, ps, log]

    def trades_logged(self) -> dict[str, np.ndarray]:
        if len(self.log) != 1:
            self.log = [{k: np.concatenate([c[k] for c in self.log]) if self.log else np.empty(0, np.int64)
                         for k in LOG_KEYS}]
        return self.log[0]

    @classmethod
    def from_data(cls, d: list) -> _Burst:
        b = cls(*d[:8])
        b.by_venue, b.by_account, b.trades, b.samples = d[8], [tuple(x) for x in d[9]], d[10], d[11]
        if d[12] is not None:
            start, nsec, grid = d[12]
            b.per_second = (start, nsec, {int(k): from_array_data(v) for k, v in grid})
        b.log = [{k: from_array_data(v) for k, v in d[13].items()}]
        return b


class SellBurst1m(Rule):
    meta = META

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.threshold = int(params["threshold_yuan"]) * PRICE_SCALE
        self.window = int(params["window_seconds"]) * NS_PER_SECOND
        self.aggr_only = bool(params["aggressive_only"])
        self.active: dict[int, _Burst] = {}
        self.market = None  # set by the engine: surveil.rules.market_context.MarketContext
        self._reset()

    def _reset(self) -> None:
        self.pend = {k: np.empty(0, np.int64) for k in ("ts", "owner", "key", "venue", "val", "broker", "from")}
        self.p_oid = OidCarry()

    # -- state ------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"active": [b.to_data() for b in self.active.values()],
                "pend": {k: array_data(v) for k, v in self.pend.items()}, "p_oid": self.p_oid.to_data()}

    def restore(self, data: dict) -> None:
        self.active = {b.owner: b for b in map(_Burst.from_data, data["active"])}
        self.pend = {k: from_array_data(v) for k, v in data["pend"].items()}
        self.p_oid = OidCarry.from_data(data["p_oid"])

    def open_alerts(self) -> int:
        return len(self.active)

    # -- what consumers ask the rule ------------------------------------------------------------------
    @classmethod
    def suggest(cls, alert: dict, params: dict) -> tuple[str, str]:
        """``written_warning``; ``restrict_trading`` for a burst of ``restrict_multiple`` × the threshold or one
        during which a main index fell ``restrict_index_drop_pct`` % (the 2024-02-19 measures)."""
        ratio = alert["value"] / alert["threshold"] if alert["threshold"] else 0.0
        drop = alert["evidence"].get("max_index_drop_pct")
        yuan = alert["value"] / 100  # integer fen
        why = f"sold {yuan:,.0f} yuan within {alert['evidence'].get('window_seconds', 60)} s ({ratio:.2f}× threshold)"
        if drop is not None:
            why += f", main index max drop {drop:.2f}%"
        if ratio >= params["restrict_multiple"] or (drop is not None and drop >= params["restrict_index_drop_pct"]):
            return "restrict_trading", why
        return "written_warning", why

    @classmethod
    def broker_view(cls, view: dict, broker: str) -> None:
        """A member firm's copy: the firm's own burst within the owner's (``by_broker``, made by the rule from
        that firm's trades only): its window (first to last trade in the burst), its value (its own peak
        window's; raised: what it sold in the window that raised the alert), breakdowns, per-second chart,
        share of the market in its own peak window and the index levels over its own window. Of the
        owner-level alert it keeps only that it was raised or made final, its rule, subject, threshold and
        severity; nothing that another firm's trades decide (not even the time it was raised)."""
        ev = view["evidence"]
        own = (ev.pop("by_broker", None) or {}).get(broker)
        if own is None:  # not a firm of this burst (broker_views sends copies to the firms in by_broker only)
            return
        view["window_start"], view["window_end"], view["value"] = own["window_start"], own["window_end"], own["value"]
        ev.clear()  # the owner's evidence goes whole; the firm's own takes its place
        ev.update(own["evidence"])

    @classmethod
    def describe(cls, alert: dict) -> str | None:
        ev = alert["evidence"]
        venues = ", ".join(f"{v} {x / 100:,.0f}" for v, x in ev["by_venue_fen"].items())
        return (f"by venue: {venues}; accounts: {len(ev['by_account'])}; "
                f"max index drop: {ev.get('max_index_drop_pct')}%")

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, seg: Segment) -> list[AlertDraft]:
        m = (seg.etype == TRADE) & (seg.side == SIDE_S)
        if self.aggr_only:
            m &= (seg.flags & F_AGGRESSOR) != 0
        rows = np.flatnonzero(m)
        if not len(rows):
            return []
        new = {"ts": seg.ts[rows], "key": seg.key[rows], "venue": seg.venue[rows].astype(np.int64),
               "val": seg.price[rows] * seg.qty[rows]}
        # an inline owner or broker: its own event only; else reference data's as of the trade's time
        owner, broker, frm = self.ctx.refs_of_rows(seg, rows)
        new["owner"] = owner.astype(np.int64)
        new["broker"] = broker.astype(np.int64)
        new["from"] = frm if frm is not None else np.full(len(rows), SINCE_ALWAYS, np.int64)
        npend = len(self.pend["ts"])
        trades = {k: np.concatenate([self.pend[k], new[k]]) if npend else new[k] for k in new}

        def oids(pos: np.ndarray) -> list:
            return self.p_oid.values(pos, seg, rows)

        if self.active:  # an open burst keeps every new trade of its owner (by_broker is made from them)
            hit = np.isin(new["owner"], np.fromiter(self.active, np.int64, len(self.active)))
            for o in np.unique(new["owner"][hit]).tolist():
                sel = np.flatnonzero(new["owner"] == o)
                self.active[o].log.append({k: new[k][sel] for k in LOG_KEYS})
        out: list[AlertDraft] = []
        uo, inv = np.unique(trades["owner"], return_inverse=True)
        tot = np.bincount(inv, weights=trades["val"].astype(np.float64))
        cand = tot >= self.threshold * (1 - 1e-9)
        if cand.any():
            sel = np.flatnonzero(cand[inv])
            order = sel[np.lexsort((trades["ts"][sel], trades["owner"][sel]))]
            own = trades["owner"][order]
            g_starts = np.flatnonzero(np.r_[True, own[1:] != own[:-1]]).tolist() + [len(order)]
            for g0, g1 in zip(g_starts[:-1], g_starts[1:]):
                out.extend(self._owner(seg, trades, order[g0:g1], npend, oids))
        # carry the trades a later window may still include
        keep = np.flatnonzero(trades["ts"] > trades["ts"][-1] - self.window)
        self.pend = {k: v[keep] for k, v in trades.items()}
        self.p_oid.keep(keep, seg, rows)
        return out

    def _owner(self, seg, trades, idx, npend, oids) -> list[AlertDraft]:
        t = trades["ts"][idx]
        left, wsum = window_sums(t, trades["val"][idx], self.window)
        last_of_ts = np.r_[t[1:] != t[:-1], True]
        q = np.flatnonzero((idx >= npend) & last_of_ts & (wsum >= self.threshold))
        if not len(q):
            return []
        owner = int(trades["owner"][idx[0]])
        out: list[AlertDraft] = []
        st = self.active.get(owner)
        run_best = -1
        for i in q.tolist():
            ti = int(t[i])
            if st is None or ti - self.window >= st.last_qual:
                if st is not None:
                    self._peak(st, trades, idx, run_best, left, wsum, t, oids)
                    out.append(self._final(st))
                st = _Burst(owner=owner, day=seg.day, start=int(t[left[i]]), last_qual=ti, raised_value=int(wsum[i]))
                st.log = [{k: trades[k][idx[left[i]:]] for k in LOG_KEYS}]  # the owner's trades from its start
                self.active[owner] = st
                self._peak(st, trades, idx, i, left, wsum, t, oids)  # the breakdown as raised
                firms = self._firms({k: trades[k][idx[left[i]: i + 1]] for k in LOG_KEYS}, st)
                out.append(self._raised(st, firms))
                run_best = i
            st.last_qual = ti
            if run_best < 0 or wsum[i] > wsum[run_best]:
                run_best = i
        self._peak(st, trades, idx, run_best, left, wsum, t, oids)
        return out

    def _peak(self, st: _Burst, trades, idx, i, left, wsum, t, oids) -> None:
        if i < 0 or int(wsum[i]) <= st.peak:
            return
        st.peak = int(wsum[i])
        st.peak_end = int(t[i])
        st.peak_start = int(t[left[i]])
        win = idx[left[i]: i + 1]
        uk, inv = self._breakdown(st, {k: trades[k][win] for k in LOG_KEYS})
        # samples: the first trades by (ts, venue, account name), so they depend neither on how venues
        # interleave nor on internal ids
        names = self.ctx.account_names(uk)
        rank = np.empty(len(uk), np.int64)
        rank[sorted(range(len(uk)), key=lambda j: (int(uk[j]) & 3, names[j]))] = np.arange(len(uk))
        first = win[np.lexsort((rank[inv], trades["ts"][win]))[:SAMPLES]]
        st.samples = oids(first)

    @staticmethod
    def _breakdown(st: _Burst, w: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Fill ``st``'s breakdowns (by venue, by account row, trades, the per-second grid) from the trades
        ``w`` of its peak window (``st.peak_start`` .. ``st.peak_end``); gives the account keys and each
        trade's account row."""
        keys, vals, vens = w["key"], w["val"], w["venue"]
        st.by_venue = {VENUES[v]: int(vals[vens == v].sum()) for v in sorted(set(vens.tolist()))}
        # per account row: (account, broker, valid_from) — an account whose row changed within the window twice
        groups, inv = np.unique(np.stack([keys, w["broker"], w["from"]], 1), axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        uk = groups[:, 0]
        sums = np.zeros(len(uk), np.int64)
        np.add.at(sums, inv, vals)
        n = np.bincount(inv, minlength=len(uk))
        st.by_account = [(int(g[0]), int(s), int(c), int(g[1]), int(g[2])) for g, s, c in zip(groups, sums, n)]
        st.trades = len(keys)
        # the peak window second by second, per account (for charts): at most 61 seconds
        first_sec = st.peak_start // NS_PER_SECOND
        sec = w["ts"] // NS_PER_SECOND - first_sec
        nsec = int(st.peak_end // NS_PER_SECOND - first_sec) + 1
        grid = np.zeros((len(uk), nsec), np.int64)
        np.add.at(grid, (inv, sec), vals)
        st.per_second = (int(first_sec * NS_PER_SECOND), nsec, {j: grid[j] for j in range(len(uk))})
        return uk, inv

    def _firms(self, w: dict[str, np.ndarray], st: _Burst, final: bool = False) -> dict[str, _Burst]:
        """Each member firm's own burst within the owner's: from the owner's trades ``w`` (the raising window,
        or for a final alert the whole burst) through that firm's accounts only: its first and last trade,
        and, final, its own peak window (the ``window_seconds`` window of the largest value, the earliest of
        equal ones). Nothing in it depends on another firm's trades (docs/rules.md, a member firm's copy)."""
        out: dict[str, _Burst] = {}
        order = np.lexsort((w["val"], w["venue"], w["key"], w["ts"]))  # time order, whatever the arrival order
        w = {k: v[order] for k, v in w.items()}
        for b in np.unique(w["broker"]).tolist():
            name = self.ctx.broker_name(b)
            if not name:
                continue
            f = {k: v[w["broker"] == b] for k, v in w.items()}
            t = f["ts"]
            fb = _Burst(owner=st.owner, day=st.day, start=int(t[0]), last_qual=int(t[-1]), raised_value=0)
            if final:
                left, wsum = window_sums(t, f["val"], self.window)
                wsum[:-1][t[1:] == t[:-1]] = -1  # a window ends after the last trade of its time
                i = int(np.argmax(wsum))
                fb.peak, fb.peak_start, fb.peak_end = int(wsum[i]), int(t[left[i]]), int(t[i])
                f = {k: v[left[i]: i + 1] for k, v in f.items()}
            else:
                fb.raised_value = fb.peak = int(f["val"].sum())
                fb.peak_start, fb.peak_end = fb.start, fb.last_qual
            self._breakdown(fb, f)
            out[name] = fb
        return out

    def close(self, watermark_ts: int) -> list[AlertDraft]:
        done = [o for o, st in self.active.items() if watermark_ts + 1 >= st.last_qual + self.window]
        return [self._final(self.active[o]) for o in sorted(done)]

    def close_day(self, day: int) -> list[AlertDraft]:
        out = [self._final(self.active[o]) for o in sorted(self.active)]
        self._reset()
        return out

    # -- alerts ---------------------------------------------------------------------------------------
    def _subject(self, st: _Burst) -> tuple:
        return ("owner", st.owner)

    def _raised(self, st: _Burst, firms: dict[str, _Burst]) -> AlertDraft:
        ev = self._raised_evidence(st)
        ev["by_broker"] = {b: {"window_start": f.start, "window_end": f.last_qual, "value": fen(f.raised_value),
                               "evidence": self._raised_evidence(f, firm=True)} for b, f in sorted(firms.items())}
        return AlertDraft(rule=META.id, rule_version=META.version, subject=self._subject(st), trading_day=st.day,
                          window_start=st.start, window_end=st.last_qual, value=fen(st.raised_value),
                          threshold=fen(self.threshold), severity="high", status="raised", evidence=ev, unit="fen")

    def _raised_evidence(self, st: _Burst, firm: bool = False) -> dict:
        ev = {"burst_start": st.start, "burst_start_iso": ns_to_iso(st.start)}
        if not firm:  # when the owner's total crossed the threshold: another firm's trades decide it
            ev.update(raised_at=st.last_qual, raised_at_iso=ns_to_iso(st.last_qual))
        ev.update({"value_when_raised_fen": fen(st.raised_value),
                   "window_seconds": self.window // NS_PER_SECOND, "aggressive_only": self.aggr_only,
                   "by_venue_fen": {v: fen(x) for v, x in st.by_venue.items()},
                   "by_account": self._accounts(st)})
        ev.update(self._common(st))
        return ev

    def _info(self, st: _Burst, entry: tuple) -> dict:
        """Who an account row of a breakdown is: venue, account, and the owner, broker and ``valid_from`` its
        trades were attributed with (as of their time)."""
        key, _val, _n, broker, frm = entry
        info = self.ctx.key_info(key)
        return {"venue": info["venue"], "account": info["account"], "owner": self.ctx.owner_name(st.owner),
                "broker": self.ctx.broker_name(broker), "valid_from": valid_from_text(frm)}

    @staticmethod
    def _order(r: dict, value: str) -> tuple:
        return (-r[value], r["venue"], r["account"], r.get("valid_from") or "", r.get("broker") or "")

    def _accounts(self, st: _Burst, with_index: bool = False) -> list[dict]:
        """The peak window by account row, largest first; ties by venue, account, valid_from and broker (names,
        not internal ids)."""
        rows = []
        for j, e in enumerate(st.by_account):
            info = self._info(st, e)
            row = {"venue": info["venue"], "account": info["account"], "broker": info["broker"],
                   "owner": info["owner"], "valid_from": info["valid_from"], "value_fen": fen(e[1]), "trades": e[2]}
            if with_index:
                row["_j"] = j
            rows.append(row)
        rows.sort(key=lambda r: self._order(r, "value_fen"))
        return rows

    def _common(self, st: _Burst) -> dict:
        """The common evidence part: the peak window's accounts with their shares, and its value per second."""
        accounts = []
        for e in st.by_account:
            val = e[1]
            accounts.append(account_entry(self._info(st, e), fen(val), val / st.peak if st.peak else 0.0))
        accounts.sort(key=lambda r: self._order(r, "value"))
        points = []
        if st.per_second is not None:
            start, nsec, grid = st.per_second
            total = np.zeros(nsec, np.int64)
            for v in grid.values():
                total += v
            points = [[start + i * NS_PER_SECOND, fen(int(x))] for i, x in enumerate(total.tolist())]
        return {"accounts": accounts, "series": series("fen", points)}

    def _per_second(self, st: _Burst, by_account: list[dict]) -> dict:
        """The peak window's sell value per second (fen) of its largest accounts, in ``by_account`` order."""
        start, nsec, grid = st.per_second  # type: ignore[misc]
        accounts = []
        for row in self._accounts(st, with_index=True)[:PER_SECOND_ACCOUNTS]:
            vals = grid[row["_j"]]
            accounts.append({"venue": row["venue"], "account": row["account"], "broker": row["broker"],
                             "valid_from": row["valid_from"], "value_fen": [fen(v) for v in vals.tolist()]})
        return {"start": start, "start_iso": ns_to_iso(start), "seconds": nsec, "accounts": accounts,
                "accounts_omitted": max(0, len(by_account) - PER_SECOND_ACCOUNTS)}

    def _final(self, st: _Burst) -> AlertDraft:
        self.active.pop(st.owner, None)
        ev, max_drop = self._final_evidence(st)
        w = st.trades_logged()
        m = (w["ts"] >= st.start) & (w["ts"] <= st.last_qual)
        by_broker = {}
        for b, f in sorted(self._firms({k: v[m] for k, v in w.items()}, st, final=True).items()):
            fev, _ = self._final_evidence(f)
            del fev["sample_order_ids"]
            by_broker[b] = {"window_start": f.start, "window_end": f.last_qual, "value": fen(f.peak), "evidence": fev}
        ev["by_broker"] = by_broker
        critical = st.peak >= self.crit * self.threshold or (max_drop is not None and max_drop >= self.drop)
        return AlertDraft(rule=META.id, rule_version=META.version, subject=self._subject(st), trading_day=st.day,
                          window_start=st.start, window_end=st.last_qual, value=fen(st.peak),
                          threshold=fen(self.threshold), severity="critical" if critical else "high",
                          status="final", evidence=ev, unit="fen")

    def _final_evidence(self, st: _Burst) -> tuple[dict, float | None]:
        """A final alert's evidence of a burst (the owner's, or a member firm's own within it), and the main
        indexes' largest drop during it."""
        by_account = self._accounts(st)
        ev = {
            "burst_start": st.start, "burst_start_iso": ns_to_iso(st.start),
            "burst_end": st.last_qual, "burst_end_iso": ns_to_iso(st.last_qual),
            "peak_value_fen": fen(st.peak),
            "peak_window_start": st.peak_start, "peak_window_start_iso": ns_to_iso(st.peak_start),
            "peak_window_end": st.peak_end, "peak_window_end_iso": ns_to_iso(st.peak_end),
            "window_seconds": self.window // NS_PER_SECOND,
            "aggressive_only": self.aggr_only,
            "by_venue_fen": {v: fen(x) for v, x in st.by_venue.items()},
            "by_account": by_account,
            "trades_in_peak_window": st.trades,
            "sample_order_ids": st.samples,
        }
        if st.per_second is not None:
            ev["peak_per_second"] = self._per_second(st, by_account)
        ev.update(self._common(st))
        max_drop = None
        if self.market is not None:
            mv, a, b = self.market.market_value(st.day, st.peak_start, st.peak_end)
            ev["market_sell_value_fen"] = fen(mv) if mv else None
            ev["market_window"] = [a, b]
            ev["share_of_market"] = round(st.peak / mv, 6) if mv else None
            idx = []
            for name in self.p_main:
                venue, code = name.split(":", 1)
                sym = self.ctx.symbol_id(code)
                path = (self.market.index_path(st.day, VENUES.index(venue), sym, st.start, st.last_qual)
                        if sym >= 0 else None)
                if path:
                    idx.append({"index": name, **path})
                    max_drop = max(max_drop or 0.0, path["max_drop_pct"])
            ev["indexes"] = idx
        ev["max_index_drop_pct"] = max_drop
        return ev, max_drop

    @property
    def p_main(self) -> list[str]:
        return list(self.params["main_indexes"])

    @property
    def crit(self) -> float:
        return float(self.params["critical_multiple"])

    @property
    def drop(self) -> float:
        return float(self.params["index_drop_pct"])


RULE = SellBurst1m
