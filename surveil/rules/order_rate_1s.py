"""order_rate_1s — peak order rate: 300 or more orders + cancels by one account in one second.

Regulatory text: SSE/SZSE/BSE programmatic-trading implementation rules (in force
2025-07-07) and CSRC rules (in force 2024-10-08): high-frequency trading is one
account whose order and cancel messages (申报、撤单) reach 300 or more in one second
(最高申报速率达到每秒300笔以上). "达到…以上" means greater than or equal. Executions
(trades) and index levels do not count. "Per second" is read as a calendar second
of exchange time (``mode = "calendar"``); ``mode = "sliding"`` checks every 1 s window
(t-1s, t] instead.

Subject: (venue, account) — an account number belongs to one exchange, so the same
account string on two venues is counted apart.

Lifecycle: one alert per (account, trading day). It is raised by the event that first
makes a second reach the threshold; its final state (at the end of the trading day)
gives the peak count per second, when it happened, how many seconds reached the
threshold, and the per-second counts of those seconds.

Evidence: the first qualifying second, the peak second, the number of seconds at or
above the threshold and their counts (at most 1,000), the first five order ids of the
first qualifying second, and the broker, owner and ``reported`` flag from reference
data. Final alerts in calendar mode also carry ``peak_context`` (for the charts of the
console and the replay report, docs/console.md): ``{"seconds": 30, "per_second":
[[second start ns, count], ...]}``, every second with messages within 30 s before and
after the peak second, but none before the first qualifying second (the rule does not
keep earlier counts, and keeping them would make the evidence depend on how the input
was cut into batches): at most 61 entries, the same whatever the batch sizes.

Known false positives: market makers and reported high-frequency accounts — the rule
implements a classification with a reporting duty, not a finding of misconduct.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from surveil.events.batch import _svev  # the compiled counting (None without it: the numpy code below)
from surveil.events.schema import CANCEL, NS_PER_SECOND, ORDER, day_start_ns, ns_to_iso
from surveil.rules.base import (
    HFT_REFERENCES,
    AlertDraft,
    Inputs,
    OidCarry,
    Param,
    Rule,
    RuleMeta,
    Segment,
    account_entry,
    array_data,
    from_array_data,
    large_segment,
    positive,
    series,
)

MAX_LISTED_SECONDS = 1000
SAMPLES = 5
#: calendar mode: the final evidence lists every second with messages within this many seconds of the peak
#: second (not before the first qualifying second), for charts
CONTEXT_SECONDS = 30

META = RuleMeta(
    id="order_rate_1s",
    version=1,
    title="Peak order rate of 300 or more orders+cancels per second",
    description=__doc__.split("\n\n")[0],
    references=HFT_REFERENCES,
    params=(
        Param("threshold", 300, int, True, "exchange rules: 每秒300笔以上 (>=)",
              "orders+cancels of one account within one second", positive),
        Param("mode", "calendar", str, False, "chosen: the rules say 'per second'",
              '"calendar" (each calendar second of exchange time) or "sliding" (any 1 s window)',
              lambda v: None if v in ("calendar", "sliding") else 'must be "calendar" or "sliding"'),
    ),
    false_positives=("market makers", "reported high-frequency accounts (reporting duty, not misconduct)"),
    key="account",
    inputs=Inputs(types=("order", "cancel"), fields=("ts", "venue", "type", "account", "order_id")),
    severity="medium",
    measure="watch",
    chart="order_rate",
)


@dataclass
class _State:
    key: int
    first_sec: int  # ns start of the first qualifying second (or window end for sliding)
    first_window_start: int
    samples: list
    peak: int = 0
    peak_at: int = 0
    n_seconds: int = 0
    seconds: list = field(default_factory=list)  # [start_ns, count] of qualifying seconds/windows
    raised_value: int = 0
    # calendar mode, for charts: [start_ns, count] of the last CONTEXT_SECONDS seconds with messages, and of
    # the seconds around the peak. Class-level defaults, so that older checkpoints still load.
    ring: deque | None = None
    context: list | None = None

    def to_data(self) -> list:
        return [self.key, self.first_sec, self.first_window_start, self.samples, self.peak, self.peak_at,
                self.n_seconds, self.seconds, self.raised_value,
                None if self.ring is None else [list(x) for x in self.ring], self.context]

    @classmethod
    def from_data(cls, d: list) -> _State:
        st = cls(*d[:9])
        st.ring = None if d[9] is None else deque(d[9])
        st.context = d[10]
        return st


class OrderRate1s(Rule):
    meta = META

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.threshold = int(params["threshold"])
        self.sliding = params["mode"] == "sliding"
        self.alerts: dict[int, _State] = {}
        self._reset_pending()

    def _reset_pending(self) -> None:
        self.p_key = np.empty(0, np.int64)
        self.p_ts = np.empty(0, np.int64)
        self.p_oid = OidCarry()

    # -- state ------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"alerts": [st.to_data() for st in self.alerts.values()], "p_key": array_data(self.p_key),
                "p_ts": array_data(self.p_ts), "p_oid": self.p_oid.to_data()}

    def restore(self, data: dict) -> None:
        self.alerts = {st.key: st for st in map(_State.from_data, data["alerts"])}
        self.p_key, self.p_ts = from_array_data(data["p_key"]), from_array_data(data["p_ts"])
        self.p_oid = OidCarry.from_data(data["p_oid"])
        self._flags = None

    def open_alerts(self) -> int:
        return len(self.alerts)

    @classmethod
    def suggest(cls, alert: dict, params: dict) -> tuple[str, str]:
        return "watch", f"peak {alert['value']} orders+cancels in one second (high-frequency classification)"

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, seg: Segment) -> list[AlertDraft]:
        m = (seg.etype == ORDER) | (seg.etype == CANCEL)
        if not m.any():
            return []
        rows = np.flatnonzero(m)
        k = seg.key[rows]
        ts = seg.ts[rows]
        npend = len(self.p_key)
        if npend:
            k = np.concatenate([self.p_key, k])
            ts = np.concatenate([self.p_ts, ts])

        def oids(pos: np.ndarray) -> list:
            return self.p_oid.values(pos, seg, rows)

        out = self._sliding(seg, k, ts, npend, oids) if self.sliding else self._calendar(seg, k, ts, oids)
        # keep the events that a later segment may still need
        if self.sliding:
            keep = np.flatnonzero(ts > ts[-1] - NS_PER_SECOND)
        else:
            sec_last = ts[-1] // NS_PER_SECOND
            keep = np.arange(np.searchsorted(ts, sec_last * NS_PER_SECOND, "left"), len(ts))
        self.p_key = k[keep]
        self.p_ts = ts[keep]
        self.p_oid.keep(keep, seg, rows)
        return out

    def _calendar(self, seg: Segment, k, ts, oids) -> list[AlertDraft]:
        base_sec = day_start_ns(seg.day) // NS_PER_SECOND
        sec = ts // NS_PER_SECOND - base_sec  # second of the day, < 2**17
        # the (account, second) groups that can matter, as composite values in ascending order, with counts
        got = self._groups_compiled(k, sec) if _svev is not None else None
        c = None  # each row's composite value: for the numpy groups, and the rows of a group reaching the threshold
        if got is None:
            c = (k << 17) | sec
            s = np.sort(self._may_matter(c, k))
            if not len(s):  # no account can matter in this segment (none near the threshold, none alerted in it)
                return []
            starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
            group_values, counts = s[starts], np.diff(np.r_[starts, len(s)])
        else:
            group_values, counts = got
        q = counts >= self.threshold
        if not q.any() and not self.alerts:
            return []
        if c is None and q.any():
            c = (k << 17) | sec
        open_sec = int(sec[-1])
        out = []
        for val, cnt in zip(group_values[q].tolist(), counts[q].tolist()):
            key, sday = val >> 17, val & 0x1FFFF
            start_ns = (base_sec + sday) * NS_PER_SECOND
            st = self.alerts.get(key)
            if st is None:
                pos = np.flatnonzero(c == val)
                raise_pos = pos[self.threshold - 1]
                st = _State(key=key, first_sec=start_ns, first_window_start=start_ns,
                            samples=oids(pos[:SAMPLES]), raised_value=cnt)
                self.alerts[key] = st
                out.append(self._draft(st, seg.day, "raised", raised_at=int(ts[raise_pos])))
            elif st.first_sec == start_ns and len(st.samples) < SAMPLES:
                # a threshold below SAMPLES was reached before the second was complete: the samples are the
                # second's first events, whatever the segments (its earlier events are carried)
                st.samples = oids(np.flatnonzero(c == val)[:SAMPLES])
        if self.alerts:
            # every closed second (counts are final) of an alerted account, in time order per account
            m = self._alerted(group_values >> 17) & ((group_values & 0x1FFFF) != open_sec)
            for val, cnt in zip(group_values[m].tolist(), counts[m].tolist()):
                st = self.alerts[val >> 17]
                start_ns = (base_sec + (val & 0x1FFFF)) * NS_PER_SECOND
                if start_ns >= st.first_sec:
                    self._observe(st, start_ns, cnt)
        return out

    def _groups_compiled(self, k: np.ndarray, sec: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The groups ``_calendar`` needs, counted in one pass of compiled code (``_svev.second_counts``, no
        sort): every (account, second) with the threshold of messages, and every group of an account alerted
        before this segment or raised in it. None when the seconds are not in order (the numpy code then)."""
        n = len(k)
        top = int(k.max()) + 1
        flags = self._flag_array(top).view(np.uint8)
        scratch = getattr(self, "_scratch", None)  # zeros between calls
        if scratch is None or len(scratch) < len(flags):
            scratch = self._scratch = np.zeros(max(len(flags), 1024), np.int32)
        k = np.ascontiguousarray(k, np.int64)
        sec = np.ascontiguousarray(sec, np.int64)

        def groups(flags):
            touched, rk, rs, rc = (np.empty(n, np.int64) for _ in range(4))
            m = _svev.second_counts(k, sec, flags, self.threshold, scratch, touched, rk, rs, rc)
            return None if m < 0 else (rk[:m], rs[:m], rc[:m])

        got = groups(flags)
        if got is None:
            return None
        rk, rs, rc = got
        new = np.unique(rk[(rc >= self.threshold) & (flags[rk] == 0)])
        if len(new):  # accounts raised in this segment: every group of theirs (observed once alerted)
            flags = flags.copy()
            flags[new] = 1
            rk, rs, rc = groups(flags)
        group_values = (rk << 17) | rs
        order = np.argsort(group_values)
        return group_values[order], rc[order]

    def _may_matter(self, c: np.ndarray, k: np.ndarray) -> np.ndarray:
        """The composite values of the rows whose account can matter in this segment: one with at least the
        threshold of messages in it (no second of another can reach it) or one alerted today (its seconds
        are observed). The groups of these accounts are whole and keep their order, so the result is the
        same as from every row; a large segment then sorts a few rows instead of all."""
        top = int(k.max()) + 1
        if not large_segment(len(k), top):
            return c
        keep = (np.bincount(k, minlength=top) >= self.threshold)[k]
        if self.alerts:
            keep |= self._alerted(k)
        return c if keep.all() else c[keep]

    def _alerted(self, keys: np.ndarray) -> np.ndarray:
        """Whether each account key has an alert today (a flag per key, instead of a set lookup per row). Alerts
        are only added during a day and all cleared at its end (which drops the flags), so a changed count
        means new alerts."""
        return self._flag_array(int(keys.max()) + 1 if len(keys) else 0)[keys]

    def _flag_array(self, top: int) -> np.ndarray:
        """The flags of ``_alerted``, at least ``top`` long (bool)."""
        flags = getattr(self, "_flags", None)
        if flags is None or len(flags) < top or getattr(self, "_flagged", -1) != len(self.alerts):
            flags = np.zeros(max(top, len(flags) if flags is not None else 0), bool)
            if self.alerts:
                known = np.fromiter(self.alerts, np.int64, len(self.alerts))
                known = known[known < len(flags)]
                flags[known] = True
            self._flags, self._flagged = flags, len(self.alerts)
        return flags

    def _observe(self, st: _State, start_ns: int, cnt: int) -> None:
        """A closed second of an alerted account (calendar mode): counts it when it reached the threshold,
        and keeps the seconds around the peak. Each second is observed once, whatever the segments."""
        span = CONTEXT_SECONDS * NS_PER_SECOND
        ring = st.ring
        if type(ring) is not deque:  # None, or a list from an older checkpoint
            ring = st.ring = deque(ring or ())
        oldest = start_ns - span - NS_PER_SECOND
        while ring and ring[0][0] <= oldest:
            ring.popleft()
        ring.append([start_ns, cnt])
        before = st.peak
        if cnt >= self.threshold:
            self._count(st, start_ns, cnt)
        if st.peak != before:  # a new peak: the seconds before it, then the ones after it
            st.context = [list(x) for x in ring]
        elif st.context is not None and start_ns <= st.peak_at + span:
            st.context.append([start_ns, cnt])

    def _sliding(self, seg: Segment, k, ts, npend, oids) -> list[AlertDraft]:
        # candidate accounts: enough messages in this segment (+ carried events) to reach the threshold
        uk, inv, cnt = np.unique(k, return_inverse=True, return_counts=True)
        cand = cnt >= self.threshold
        if not cand.any():
            return []
        sel = np.flatnonzero(cand[inv])
        order = sel[np.lexsort((ts[sel], k[sel]))]
        ks, tss = k[order], ts[order]
        grp_start = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        out = []
        for gi, g0 in enumerate(grp_start.tolist()):
            g1 = grp_start[gi + 1] if gi + 1 < len(grp_start) else len(ks)
            t = tss[g0:g1]
            left = np.searchsorted(t, t - NS_PER_SECOND, "right")
            right = np.searchsorted(t, t, "right")  # include simultaneous events
            counts = right - left
            is_new = order[g0:g1] >= npend
            last_of_ts = np.r_[t[1:] != t[:-1], True]
            ev = np.flatnonzero(is_new & last_of_ts & (counts >= self.threshold))
            if not len(ev):
                continue
            key = int(ks[g0])
            st = self.alerts.get(key)
            for i in ev.tolist():
                end = int(t[i])
                c = int(counts[i])
                if st is None:
                    first = int(left[i])
                    st = _State(key=key, first_sec=end, first_window_start=int(t[first]),
                                samples=oids(order[g0 + first: g0 + first + SAMPLES]), raised_value=c)
                    self.alerts[key] = st
                    out.append(self._draft(st, seg.day, "raised", raised_at=end))
                self._count(st, end, c)
        return out

    def _count(self, st: _State, at_ns: int, cnt: int) -> None:
        st.n_seconds += 1
        if cnt > st.peak:
            st.peak, st.peak_at = cnt, at_ns
        if len(st.seconds) < MAX_LISTED_SECONDS:
            st.seconds.append([at_ns, cnt])

    # -- lifecycle --------------------------------------------------------------------------------
    def close_day(self, day: int) -> list[AlertDraft]:
        if not self.sliding and len(self.p_key):
            # the last open second of the day is closed now
            base_sec = day_start_ns(day) // NS_PER_SECOND
            sec = self.p_ts // NS_PER_SECOND - base_sec
            c = (self.p_key << 17) | sec
            vals, counts = np.unique(c, return_counts=True)
            for val, cnt in zip(vals.tolist(), counts.tolist()):
                st = self.alerts.get(val >> 17)
                start_ns = (base_sec + (val & 0x1FFFF)) * NS_PER_SECOND
                if st is not None and start_ns >= st.first_sec:
                    self._observe(st, start_ns, cnt)
        out = [self._draft(st, day, "final") for st in sorted(self.alerts.values(), key=lambda s: s.key)]
        self.alerts = {}
        self._flags = None  # the flags of the day's alerted accounts (see _alerted)
        self._reset_pending()
        return out

    def _draft(self, st: _State, day: int, status: str, raised_at: int | None = None) -> AlertDraft:
        info = self.ctx.key_info(st.key, st.first_window_start)  # as of the first qualifying window
        unit = "window" if self.sliding else "second"
        if status == "raised":
            value = st.raised_value
            window_end = st.first_sec + (0 if self.sliding else NS_PER_SECOND)
            ev = {"mode": "sliding" if self.sliding else "calendar",
                  "raised_at": raised_at, "raised_at_iso": ns_to_iso(raised_at),
                  f"first_{unit}": st.first_window_start, f"first_{unit}_iso": ns_to_iso(st.first_window_start),
                  "count_when_raised": st.raised_value}
        else:
            value = st.peak
            last = st.seconds[-1][0] if st.seconds else st.first_sec
            window_end = last + (0 if self.sliding else NS_PER_SECOND)
            ev = {"mode": "sliding" if self.sliding else "calendar",
                  f"first_{unit}": st.first_window_start, f"first_{unit}_iso": ns_to_iso(st.first_window_start),
                  "peak_count": st.peak, f"peak_{unit}": st.peak_at, f"peak_{unit}_iso": ns_to_iso(st.peak_at),
                  f"{unit}s_at_threshold": st.n_seconds,
                  f"per_{unit}": st.seconds,
                  f"per_{unit}_truncated": st.n_seconds > len(st.seconds)}
            if not self.sliding:
                ev["peak_context"] = {"seconds": CONTEXT_SECONDS, "per_second": st.context or []}
            # the common "peak message rate" the console shows on account pages
            ev["peak_rate"] = {"count": st.peak, "at": st.peak_at, "at_iso": ns_to_iso(st.peak_at), "unit": unit}
        # the chart's series: per calendar second, or per 1 s window (t - 1 s, t] (points start at t - 1 s)
        if status == "raised":
            points = [[st.first_sec - (NS_PER_SECOND if self.sliding else 0), st.raised_value]]
        elif self.sliding:
            points = [[t - NS_PER_SECOND, c] for t, c in st.seconds]
        else:
            points = st.context or st.seconds
        ev.update({"broker": info.get("broker"), "owner": info.get("owner"), "reported": info.get("reported"),
                   "sample_order_ids": st.samples,
                   "accounts": [account_entry(info, value, 1.0)],
                   "series": series("messages", points)})
        return AlertDraft(rule=META.id, rule_version=META.version, subject=("account", st.key), trading_day=day,
                          window_start=st.first_window_start, window_end=window_end, value=value,
                          threshold=self.threshold, severity="medium", status=status, evidence=ev)


RULE = OrderRate1s
